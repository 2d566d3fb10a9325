"""The strategies table of `compare_strategies.py` (also used by `bench_recipe.py` and `bench_samplers.py`): every
cell the mean ± 95 % confidence half-width over the seeds (Student t), the check that rows are comparable (the
same FID sample sizes N and M, the same evaluation sampler), and which methods the accuracy CIs separate.

A row is one finished run's summary (`compare_strategies.summarize_run`): a dict with "accuracy", "forgetting",
"frechet", "num_generated", "num_real", "sampler", "seconds" and the memorisation and buffer columns.
"""

from __future__ import annotations

import statistics

# The two-sided 95 % Student t quantile by degrees of freedom (seeds − 1), for the confidence half-widths.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


class NotComparable(ValueError):
    """Rows measured at different FID sample sizes or with different samplers."""


def half_width(values: list[float]) -> float:
    """The 95 % confidence half-width t·sd/√n of the mean (Student t, n − 1 degrees of freedom; 0 for one value)."""
    if len(values) == 1:
        return 0.0
    return T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / len(values) ** 0.5


def ci(values: list[float], digits: int = 3) -> str:
    """mean ± the 95 % confidence half-width ("mean" alone for one value: no spread to show)."""
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half_width(values):.{digits}f}"


def interval(values: list[float]) -> tuple[float, float]:
    mean, half = statistics.mean(values), half_width(values)
    return mean - half, mean + half


def column(rows: list[dict], name: str, digits: int = 3) -> str:
    values = [r[name] for r in rows if r.get(name) is not None]
    return ci(values, digits) if values else "–"


def check_comparable(results: dict[str, list[dict]]) -> str:
    """ "N = … generated vs M = … real images per task" of every row; `NotComparable` for rows measured at
    different sizes or with different samplers (their FIDs and accuracies are not comparable)."""
    sizes = {(tuple(r["num_generated"]), tuple(r["num_real"])) for rows in results.values() for r in rows}
    if len(sizes) != 1:
        raise NotComparable(f"the runs' FIDs were measured at different sample sizes {sorted(sizes)}: not compared")
    samplers = {sampler_of(r) for rows in results.values() for r in rows}
    if len(samplers) != 1:
        raise NotComparable(f"the runs were evaluated with different samplers {sorted(samplers)}: not compared")
    ((n, m),) = sizes
    span = lambda v: str(v[0]) if len(v) == 1 else f"{v[0]}–{v[-1]}"  # noqa: E731
    return f"N = {span(n)} generated vs M = {span(m)} real images per task"


def sampler_of(row: dict) -> str:
    """The run's evaluation sampler without its seed (seeds differ between rows by design)."""
    return row["sampler"].rsplit(", seed", 1)[0]


def table(results: dict[str, list[dict]]) -> str:
    """Two markdown tables over the same rows: continual quality, then memorisation, diversity (recall next to the
    precision that makes it meaningful) and buffer attraction."""
    acc = {m: statistics.mean(r["accuracy"] for r in rs) for m, rs in results.items()}
    gap = acc.get("joint", float("nan")) - acc.get("naive", float("nan"))
    first = next(iter(results.values()))[0]
    lines = [
        f"Oracle-feature FID at {check_comparable(results)}; evaluation sampler: {sampler_of(first)}; cells: mean "
        "± 95 % CI over the seeds.",
        "",
        "| method | seeds | final avg accuracy ↑ | forgetting ↓ | oracle-feature FID ↓ | naive→joint gap closed | "
        "time / run | teacher time / task |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, rs in results.items():
        closed = (acc[m] - acc["naive"]) / gap if "naive" in acc and "joint" in acc and gap else float("nan")
        minutes = statistics.median(r["seconds"] for r in rs) / 60
        teacher = [r["teacher_seconds_per_task"] for r in rs if r.get("teacher_seconds_per_task") is not None]
        lines.append(
            f"| {m} | {len(rs)} | {column(rs, 'accuracy')} | {column(rs, 'forgetting')} | "
            f"{column(rs, 'frechet', 1)} | {closed:.0%} | {minutes:.0f} min | "
            f"{f'{statistics.median(teacher):.0f} s' if teacher else '–'} |"
        )
    lines += [
        "",
        "| method | near-copies ↓ | \\|log distance ratio\\| ↓ | precision ↑ | recall ↑ | buffer attraction | "
        "buffer's share | joint's samples, same buffer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, rs in results.items():
        lines.append(
            f"| {m} | {column(rs, 'copy_fraction')} | {column(rs, 'abs_log_distance_ratio', 2)} | "
            f"{column(rs, 'precision', 2)} | {column(rs, 'recall', 2)} | {column(rs, 'buffer_attraction')} | "
            f"{column(rs, 'buffer_share')} | {column(rs, 'joint_attraction')} |"
        )
    return "\n".join(lines)


def separated(results: dict[str, list[dict]], name: str = "accuracy") -> list[str]:
    """The largest set of methods whose 95 % CIs of `name` are pairwise disjoint (greedy by upper end: optimal for
    intervals), lowest first."""
    spans = sorted(((*interval([r[name] for r in rs]), m) for m, rs in results.items()), key=lambda x: x[1])
    chosen, end = [], float("-inf")
    for lo, hi, m in spans:
        if lo > end:
            chosen.append(m)
            end = hi
    return chosen
