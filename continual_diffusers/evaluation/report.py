"""`ContinualReport`: collects one evaluation row per finished task and writes the report folder:

report/metrics.json   matrices R[k][i] per metric, global curves, summaries (average, AIQ, forgetting, BWT), each
                      summarised metric's direction (higher_is_better), the sample sizes behind FID and KID
                      (sample_sizes), the metrics measured on some tasks only and why (left_out: e.g. FID and KID
                      of a task with fewer than 2 test images) and the names a reader sees (display_names)
report/metrics.csv    long format: metric, after_task, task, value (num_generated / num_real rows: N and M)
report/heatmap_<metric>.png, report/curves.png, report/samples_sheet.png
report/report.md      links the above and states the headline numbers, with N and M for every FID and KID

Forgetting and backward transfer follow `continual_metrics`' sign convention: both are measured in the metric's
"better" direction, so forgetting > 0 and BWT < 0 mean earlier tasks got worse, for accuracy and FID alike. How
each metric is summarised (directions, |log r| for the distance ratio, what is left out) is `directions`' table.
FID and KID are compared across evaluations only at equal sample sizes: when a task's entries were measured with
different numbers of images (a run resumed with another --eval_num_samples), their forgetting and BWT are left
out and report.md says why.
"""

from __future__ import annotations

import csv
import json
import os

from ..utils.logging import get_logger
from ..utils.markdown import markdown_text
from .continual_metrics import as_matrix, average_final, average_incremental, summarize
from .directions import (
    DERIVED,
    HIGHER_IS_BETTER,
    LEVEL_ONLY,
    NOT_SUMMARISED,
    SAMPLE_SIZE_DEPENDENT,
    direction_text,
    display_name,
)
from .figures import is_drawn, plots

logger = get_logger(__name__)
HEADLINE_METRICS = ("accuracy", "task_share_normalised")  # the first one a run has leads the headline
GLOBAL = "0"  # key of metrics that are one number per evaluation (not per task)


class ContinualReport:
    def __init__(self, history: list[dict] | None = None, sampler: str = ""):
        self.history: list[dict] = history or []  # [{"after_task": k, "metrics": {metric: {task: value}}}]
        self.data: dict = {}  # the task file's class order (and names), echoed in report.md; set by cli.launch
        self.sampler = sampler  # how the evaluation samples were drawn (`task_eval.describe_sampler`)

    def add(self, after_task: int, results: dict[str, dict[int, float]]) -> None:
        metrics = {m: {str(t): float(v) for t, v in values.items()} for m, values in results.items()}
        self.history = [h for h in self.history if h["after_task"] != after_task]
        self.history.append({"after_task": after_task, "metrics": metrics})

    def state_dict(self) -> list[dict]:
        return self.history

    def matrices(self) -> dict[str, list[list[float]]]:
        """Per-task metrics as lower-triangular rows; rows follow evaluation order, columns the seen tasks. A metric
        missing for some task of some evaluation is left out (`left_out` says why)."""
        out = {}
        for name in self._per_task_names():
            rows = [[h["metrics"][name][t] for t in h["metrics"][name]] for h in self.history if name in h["metrics"]]
            if len(rows) == len(self.history) and all(len(row) == k + 1 for k, row in enumerate(rows)):
                out[name] = rows
        return out

    def _per_task_names(self) -> list[str]:
        return sorted({m for h in self.history for m, v in h["metrics"].items() if GLOBAL not in v})

    def left_out(self) -> dict[str, str]:
        """{metric: why it has no matrix}: the per-task metrics measured on some tasks only, e.g. FID and KID when
        a task has fewer than 2 test images (`metrics.frechet_distance` needs 2 per set)."""
        matrices, out = self.matrices(), {}
        small = self._small_sets()
        quality = (*SAMPLE_SIZE_DEPENDENT, "kid_sd") if small else ()  # perhaps measured on no task at all
        for name in sorted({*self._per_task_names(), *quality}):
            if name in matrices:
                continue
            if name in (*SAMPLE_SIZE_DEPENDENT, "kid_sd") and small:
                out[name] = f"needs at least 2 generated and 2 real images per task; {small}"
            else:
                out[name] = "not measured on every task (see the evaluation's warnings: too few images, or held-out "
                out[name] += "images that are training images)"
        return out

    def _small_sets(self) -> str:
        """ "task 2 has M = 1" for the tasks evaluated with fewer than 2 generated or real images ("" if none)."""
        small = {}
        for h in self.history:
            for key, letter in (("num_generated", "N"), ("num_real", "M")):
                for task, value in h["metrics"].get(key, {}).items():
                    if value < 2 and task != GLOBAL:
                        small[(task, letter)] = int(value)
        return ", ".join(f"task {t} has {letter} = {v}" for (t, letter), v in sorted(small.items()))

    def curves(self) -> dict[str, list[float]]:
        names = sorted({m for h in self.history for m, v in h["metrics"].items() if GLOBAL in v})
        return {n: [h["metrics"][n][GLOBAL] for h in self.history if n in h["metrics"]] for n in names}

    def summary(self) -> dict[str, dict[str, float]]:
        """Per summarised metric: average final and AIQ, plus forgetting and BWT where they have a direction and
        the sample sizes allow them (module docstring; `directions`)."""
        matrices = {}
        for name, rows in sorted(self.matrices().items()):  # each derived summary right after its source
            matrices[name] = rows
            for derived, (source, transform) in DERIVED.items():
                if source == name:
                    matrices[derived] = [[transform(v) for v in row] for row in rows]
        out, unequal = {}, self.unequal_sample_sizes()
        for name, rows in matrices.items():
            if name in NOT_SUMMARISED:
                continue
            r = as_matrix(rows)
            if name in LEVEL_ONLY or name in unequal:
                out[name] = {"average_final": average_final(r), "average_incremental": average_incremental(r)}
            else:
                out[name] = summarize(r, HIGHER_IS_BETTER.get(name, True))
        return out

    def unequal_sample_sizes(self) -> list[str]:
        """The sample-size-dependent metrics (FID, KID) with a task whose entries were measured with different
        numbers of generated or real images: their forgetting and BWT would compare unequal N."""
        matrices = self.matrices()
        for key in ("num_generated", "num_real"):
            rows = matrices.get(key, [])
            columns = [{row[i] for row in rows[i:]} for i in range(len(rows))]
            if any(len(values) > 1 for values in columns):
                return [m for m in SAMPLE_SIZE_DEPENDENT if m in matrices]
        return []

    def sample_sizes(self) -> str:
        """ "N = 100 generated vs M = 71–72 real images per task" for the latest evaluation ("" without sizes)."""
        if not self.history:
            return ""
        last = self.history[-1]["metrics"]
        if "num_generated" not in last:
            return ""
        n, m = (sorted({int(v) for v in last[key].values()}) for key in ("num_generated", "num_real"))
        where = "in all" if GLOBAL in last["num_generated"] else "per task"
        return f"N = {_span(n)} generated vs M = {_span(m)} real images {where}"

    def headline(self) -> str:
        """The run in one line: the main metric (accuracy; the normalised task share for unconditional models) as
        its final average with forgetting, then the quality metric's final value with its N and M; the rest is in
        report.md's table."""
        summary, curves, sizes = self.summary(), self.curves(), self.sample_sizes()
        parts = []
        for name in HEADLINE_METRICS:
            if name in summary:
                s = summary[name]
                text = f"{display_name(name)} {s['average_final']:.3f} (final avg)"
                parts.append(text + (f", forgetting {s['forgetting']:.3f}" if "forgetting" in s else ""))
                break
        for name in SAMPLE_SIZE_DEPENDENT[:1]:  # FID: the quality number readers look for next
            if name in summary:
                parts.append(f"{display_name(name)} {summary[name]['average_final']:.3f} (final avg)")
            elif name in curves:
                parts.append(f"{display_name(name)} {curves[name][-1]:.3f} (final)")
            else:
                continue
            parts[-1] += f" at {sizes}" if sizes else ""
        return "; ".join(parts) + ("; the other metrics are in report.md's table" if parts else "")

    def write(self, out_dir: str, sample_grids: dict[int, str] | None = None) -> str:
        os.makedirs(out_dir, exist_ok=True)
        tasks = [h["after_task"] for h in self.history]
        data = {"tasks": tasks, "matrices": self.matrices(), "curves": self.curves(), "summary": self.summary()}
        data["higher_is_better"] = {name: HIGHER_IS_BETTER.get(name, True) for name in data["summary"]}
        data["sampler"] = self.sampler
        data["sample_sizes"] = {
            "text": self.sample_sizes(),
            "unequal": self.unequal_sample_sizes(),
            "kid_subsets": "KID: the mean and sd of the unbiased MMD² over 100 random subset pairs, each of "
            "min(100, N/2, M/2) images of each set drawn without replacement",
        }
        data["left_out"] = self.left_out()
        names = {*data["matrices"], *data["curves"], *data["summary"], *data["left_out"]}
        data["display_names"] = {name: display_name(name) for name in sorted(names)}
        with open(os.path.join(out_dir, "metrics.json"), "w") as fh:
            json.dump(data, fh, indent=2)
        self._write_csv(os.path.join(out_dir, "metrics.csv"))
        figures = plots(out_dir, tasks, data, sample_grids or {})
        path = os.path.join(out_dir, "report.md")
        with open(path, "w") as fh:
            fh.write(_markdown(tasks, data, figures, self.headline()) + _class_order_lines(self.data))
        return path

    def _write_csv(self, path: str) -> None:
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["metric", "after_task", "task", "value"])
            for h in self.history:
                for metric, values in h["metrics"].items():
                    for task, value in values.items():
                        writer.writerow([metric, h["after_task"], "all" if task == GLOBAL else task, value])


def _markdown(tasks: list[int], data: dict, figures: list[str], headline: str) -> str:
    lines = ["# Continual evaluation report", "", f"Tasks evaluated: {tasks}", "", f"**Headline:** {headline}", ""]
    sizes = data["sample_sizes"]
    if data["sampler"]:
        lines += [f"Every metric is measured on samples drawn with: {data['sampler']}.", ""]
    if sizes["text"]:
        lines += [
            f"Oracle-feature FID and KID: {sizes['text']} (latest evaluation); both depend on these sizes, so "
            f"compare them only with values at the same N and M. {sizes['kid_subsets']}.",
            "",
        ]
    if sizes["unequal"]:
        lines += [
            f"**Not compared:** {', '.join(display_name(m) for m in sizes['unequal'])} of some task were measured "
            "with different numbers of images after different tasks, so their forgetting and backward transfer "
            "are left out.",
            "",
        ]
    left_out = {name: why for name, why in data["left_out"].items() if is_drawn(name)}
    if left_out:
        lines += [
            "**Left out** (not measured on every task, so no matrix or summary): "
            + "; ".join(f"{display_name(name)}: {why}" for name, why in left_out.items())
            + ".",
            "",
        ]
    if data["summary"]:
        lines += [
            "| metric | better | average final | average incremental (AIQ) | forgetting | backward transfer |",
            "|---|---|---|---|---|---|",
        ]
        for name, s in data["summary"].items():
            final = f"{s['average_final']:.4f}" + _kid_sd(name, data)
            forgetting = f"{s['forgetting']:.4f}" if "forgetting" in s else "–"
            bwt = _signed(s["backward_transfer"]) if "backward_transfer" in s else "–"
            shown = display_name(name).replace("|", "\\|")  # a bare | would end the table cell
            lines.append(
                f"| {shown} | {direction_text(name)} | {final} | {s['average_incremental']:.4f} | "
                f"{forgetting} | {bwt} |"
            )
        lines += [
            "",
            "Forgetting and backward transfer are measured in each metric's *better* direction, so for every metric "
            "(accuracy and FID alike) **forgetting > 0 and backward transfer < 0 mean earlier tasks got worse**: "
            "forgetting is the mean worsening from a task's best earlier score to its final one, backward transfer "
            "the mean change from just after learning the task to the end (negative: worse, positive: better). "
            "train_distance_ratio (ideal 1: < 1 copies, > 1 off the data) is summarised as |log r|.",
            "",
        ]
    for name, values in data["curves"].items():
        if name not in NOT_SUMMARISED:
            sds = data["curves"].get("kid_sd") if name == "kid" else None
            shown = [f"{v:.4f}" + (f" ± {sd:.4f}" if sds else "") for v, sd in zip(values, sds or values)]
            lines.append(f"- {display_name(name)} after each task: " + ", ".join(shown))
    if "buffer_attraction" in data["curves"]:
        lines.append(
            "- buffer_attraction: the share of samples whose nearest training image (in pixels) is one the replay "
            "buffer held while the evaluated model trained; buffer_share, the buffer's share of those training "
            "images, is what a generator that does not favour its buffer scores."
        )
    lines += ["", "R[k][i] is the score on task i after training task k. Data: `metrics.json`, `metrics.csv`.", ""]
    lines += [f"![{os.path.basename(f)}]({os.path.basename(f)})" for f in figures]
    return "\n".join(lines) + "\n"


def _kid_sd(name: str, data: dict) -> str:
    """ " ± sd" for KID's average final value: the mean over tasks of the final row's sd over subsets."""
    rows = data["matrices"].get("kid_sd")
    if name != "kid" or not rows:
        return ""
    return f" ± {sum(rows[-1]) / len(rows[-1]):.4f} (sd over subsets)"


def _signed(value: float) -> str:
    """+0.1250 / -0.1250, and 0.0000 without a sign when it rounds to zero (a "+0.0000" reads as a gain)."""
    text = f"{value:+.4f}"
    return text[1:] if text in ("+0.0000", "-0.0000") else text


def _span(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"


def _class_order_lines(data: dict) -> str:
    """The class order the tasks were cut from, as the task file records it ("" if it does not); the class names are
    the file's text, escaped so that they read as text, not as Markdown or HTML."""
    order, names = data.get("class_order"), data.get("class_names")
    if not order:
        return ""
    shown = [f"{c} ({markdown_text(names[c])})" if names and c < len(names) else str(c) for c in order]
    return f"\nClass order (from the task file): {', '.join(shown)}\n"
