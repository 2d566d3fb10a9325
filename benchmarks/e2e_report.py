"""The tables of `bench_end_to_end.py`: medians of each column's runs, the median of the per-pair ratios of ours to
every other column, ours' wall at another column's work, and ours' task-end parts. A run is the dict that
`bench_end_to_end.breakdown` returns, plus wall, CPU and peak RSS.
"""

from __future__ import annotations

import statistics

METRICS = (
    ("wall (s)", lambda r: r["wall"]), ("CPU (s)", lambda r: r["cpu"]),
    ("peak RSS (MiB)", lambda r: r["peak_rss_mb"]), ("RSS at first step (MiB)", lambda r: r["first_step_rss_mb"]),
    ("start-up (s)", lambda r: r["startup"]), ("start-up CPU (s)", lambda r: r["startup_cpu"]),
    ("train (s)", lambda r: r["train"]), ("train CPU (s)", lambda r: r["train_cpu"]),
    ("images/s (train wall)", lambda r: r["rows"] / r["train"] if r["rows"] else None),
    ("images/CPU s (train)", lambda r: r["rows"] / r["train_cpu"] if r["rows"] else None),
    ("task ends (s)", lambda r: r["task_ends"]), ("task ends CPU (s)", lambda r: r["task_ends_cpu"]),
    ("exit (s)", lambda r: r["exit"]), ("exit CPU (s)", lambda r: r["exit_cpu"]),
    ("peak RSS before task 2 (MiB)", lambda r: r["peak_before_task_2"]), ("optimizer steps", lambda r: r["steps"]),
    ("rows trained", lambda r: r["rows"]),
)  # fmt: skip


STARTUP_METRICS = ("wall", "CPU", "peak RSS", "RSS at first step", "start-up", "start-up CPU")


def report(title: str, results: dict[str, list[dict]]) -> None:
    """Print the table of one comparison: medians per column, the median per-pair ratio of ours to every other
    column, the same-work line, ours' task-end parts and the heavy imports before each first step."""
    names = list(results)
    ratio_names = [n for n in names if n != "ours"]
    print(f"\n{title}")
    width = max(14, *(len(n) + 7 for n in ratio_names))
    ratio_header = "".join(f"{'ours/' + n:>{width}s}" for n in ratio_names)
    print(f"{'':26s}" + "".join(f"{n:>12s}" for n in names) + ratio_header)
    for label, get in METRICS:
        if label.split(" (")[0] not in STARTUP_METRICS and "train" not in results[names[0]][0]:
            continue  # --startup_only
        values = {n: [get(r) for r in results[n]] for n in names}
        medians = {n: statistics.median(vs) if None not in vs else None for n, vs in values.items()}
        cells = "".join(f"{_fmt(medians[n]):>12s}" for n in names)
        ratios = ""
        for other in ratio_names:  # median of the per-pair ratios (paired runs)
            pairs = [a / b for a, b in zip(values["ours"], values[other], strict=False) if a and b]
            ratios += f"{(f'{statistics.median(pairs):.3f}' if pairs else '-'):>{width}s}"
        print(f"{label:26s}{cells}{ratios}")
    if "train" in results["ours"][0]:
        for other in ratio_names:
            print(same_work_line(results["ours"], results[other], other))
    parts = {}
    for r in results["ours"]:
        for name, seconds in r["end_parts"].items():
            parts.setdefault(name, []).append(seconds)
    for name, seconds in parts.items():
        print(f"  ours: {name:20s}{statistics.median(seconds):8.2f} s over all task ends (median over runs)")
    for n in names:
        heavy = ", ".join(results[n][0]["heavy_imports"]) or "none of the packages watched"
        print(f"  {n}: imported before its first step: {heavy}")


OURS_ONLY = ("checkpoint", "model_cards")  # task-end work neither the bare loop nor the earlier code does


def same_work_wall(ours: dict, other: dict) -> float | None:
    """Ours' wall had it done the other column's work: less the rows it trained beyond the other's (at its own
    seconds per row; every batch of ours is full, the others' last batch of a task is not) and less the task-end
    work only ours does (`OURS_ONLY`: a resumable checkpoint and model cards per task)."""
    if not (ours.get("rows") and other.get("rows")):
        return None
    extra_rows = ours["rows"] - other["rows"]
    ours_only = sum(ours["end_parts"].get(name, 0.0) for name in OURS_ONLY)
    return ours["wall"] - extra_rows * ours["train"] / ours["rows"] - ours_only


def same_work_line(ours: list[dict], other: list[dict], name: str) -> str:
    """The per-pair ratio of `same_work_wall` to the other's wall (median and range), as one report line."""
    ratios = [w / o["wall"] for r, o in zip(ours, other, strict=False) if (w := same_work_wall(r, o)) is not None]
    if not ratios:
        return f"  ours/{name} at {name}'s work: - (rows unknown)"
    spread = f" (pairs {min(ratios):.3f}–{max(ratios):.3f})" if len(ratios) > 1 else ""
    return (f"  ours/{name} wall at {name}'s work (less ours' extra rows and {' + '.join(OURS_ONLY)}): "
            f"{statistics.median(ratios):.3f}{spread}")  # fmt: skip


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}"
