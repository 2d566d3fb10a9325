"""`ContinualReport`: collects one evaluation row per finished task and writes the report folder:

report/metrics.json   matrices R[k][i] per metric, global curves, summaries (average, AIQ, forgetting, BWT), and
                      each summarised metric's direction (higher_is_better)
report/metrics.csv    long format: metric, after_task, task, value
report/heatmap_<metric>.png, report/curves.png, report/samples_sheet.png
report/report.md      links the above and states the headline numbers

Forgetting and backward transfer follow `continual_metrics`' sign convention: both are measured in the metric's
"better" direction, so forgetting > 0 and BWT < 0 mean earlier tasks got worse, for accuracy and FID alike.
"""

from __future__ import annotations

import csv
import json
import math
import os

from ..utils.logging import get_logger
from ..utils.markdown import markdown_text
from .continual_metrics import as_matrix, summarize
from .evaluator import HIGHER_IS_BETTER

logger = get_logger(__name__)
GLOBAL = "0"  # key of metrics that are one number per evaluation (not per task)


class ContinualReport:
    def __init__(self, history: list[dict] | None = None):
        self.history: list[dict] = history or []  # [{"after_task": k, "metrics": {metric: {task: value}}}]
        self.data: dict = {}  # the task file's class order (and names), echoed in report.md; set by cli.launch

    def add(self, after_task: int, results: dict[str, dict[int, float]]) -> None:
        metrics = {m: {str(t): float(v) for t, v in values.items()} for m, values in results.items()}
        self.history = [h for h in self.history if h["after_task"] != after_task]
        self.history.append({"after_task": after_task, "metrics": metrics})

    def state_dict(self) -> list[dict]:
        return self.history

    def matrices(self) -> dict[str, list[list[float]]]:
        """Per-task metrics as lower-triangular rows; rows follow evaluation order, columns the seen tasks."""
        names = sorted({m for h in self.history for m, v in h["metrics"].items() if GLOBAL not in v})
        out = {}
        for name in names:
            rows = [[h["metrics"][name][t] for t in h["metrics"][name]] for h in self.history if name in h["metrics"]]
            if all(len(row) == k + 1 for k, row in enumerate(rows)):
                out[name] = rows
        return out

    def curves(self) -> dict[str, list[float]]:
        names = sorted({m for h in self.history for m, v in h["metrics"].items() if GLOBAL in v})
        return {n: [h["metrics"][n][GLOBAL] for h in self.history if n in h["metrics"]] for n in names}

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: summarize(as_matrix(rows), HIGHER_IS_BETTER.get(name, True))
            for name, rows in self.matrices().items()
        }

    def headline(self) -> str:
        parts = []
        for name, s in self.summary().items():
            parts.append(f"{name}: final avg {s['average_final']:.3f}, forgetting {s['forgetting']:.3f}")
        for name, values in self.curves().items():
            parts.append(f"{name}: final {values[-1]:.3f}")
        return "; ".join(parts)

    def write(self, out_dir: str, sample_grids: dict[int, str] | None = None) -> str:
        os.makedirs(out_dir, exist_ok=True)
        tasks = [h["after_task"] for h in self.history]
        data = {"tasks": tasks, "matrices": self.matrices(), "curves": self.curves(), "summary": self.summary()}
        data["higher_is_better"] = {name: HIGHER_IS_BETTER.get(name, True) for name in data["summary"]}
        with open(os.path.join(out_dir, "metrics.json"), "w") as fh:
            json.dump(data, fh, indent=2)
        self._write_csv(os.path.join(out_dir, "metrics.csv"))
        figures = _plots(out_dir, tasks, data, sample_grids or {})
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


def _plots(out_dir: str, tasks: list[int], data: dict, grids: dict[int, str]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for name, rows in data["matrices"].items():
        files.append(_heatmap(plt, out_dir, name, tasks, rows))
    if data["matrices"]:
        files.append(_curves(plt, out_dir, tasks, data["matrices"]))
    if grids:
        files.append(_sheet(plt, out_dir, grids))
    return files


def _heatmap(plt, out_dir: str, name: str, tasks: list[int], rows: list[list[float]]) -> str:
    t = len(rows)
    grid = [[rows[k][i] if i <= k else math.nan for i in range(t)] for k in range(t)]
    fig, ax = plt.subplots(figsize=(1.2 * t + 2.5, 1.0 * t + 1.5))
    cmap = "viridis" if HIGHER_IS_BETTER.get(name, True) else "viridis_r"
    # fractions: a fixed 0..1 scale compares runs at a glance
    bounded = name in ("accuracy", "task_share", "copy_fraction", "precision", "recall")
    values = [v for row in rows for v in row]
    lo, hi = (0.0, 1.0) if bounded else (min(values), max(values))
    im = ax.imshow(grid, cmap=cmap, vmin=lo, vmax=hi)
    for k in range(t):
        for i in range(k + 1):
            level = (grid[k][i] - lo) / (hi - lo) if hi > lo else 0.5
            bright = level > 0.6 if HIGHER_IS_BETTER.get(name, True) else level < 0.4
            ax.text(i, k, f"{grid[k][i]:.2f}", ha="center", va="center", color="k" if bright else "w", fontsize=9)
    ax.set_xticks(range(t), [f"task {x}" for x in tasks])
    ax.set_yticks(range(t), [f"after {x}" for x in tasks])
    ax.set_xlabel("evaluated task i")
    ax.set_ylabel("after training task k")
    better = "higher" if HIGHER_IS_BETTER.get(name, True) else "lower"
    ax.set_title(f"{name} R[k][i] ({better} is better)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path = os.path.join(out_dir, f"heatmap_{name}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _curves(plt, out_dir: str, tasks: list[int], matrices: dict) -> str:
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.5 * len(matrices), 3.5), squeeze=False)
    for ax, (name, rows) in zip(axes[0], matrices.items()):
        for i, task in enumerate(tasks):
            ax.plot(tasks[i:], [rows[k][i] for k in range(i, len(rows))], marker="o", label=f"task {task}")
        ax.set_xlabel("after training task")
        ax.set_title(name)
        ax.set_xticks(tasks)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out_dir, "curves.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _sheet(plt, out_dir: str, grids: dict[int, str]) -> str:
    from PIL import Image

    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 4), squeeze=False)
    for ax, (task, path) in zip(axes[0], sorted(grids.items())):
        ax.imshow(Image.open(path), cmap="gray")
        ax.set_title(f"after task {task}")
        ax.axis("off")
    fig.tight_layout()
    path = os.path.join(out_dir, "samples_sheet.png")
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the tallest panel's title is not clipped
    plt.close(fig)
    return path


def _markdown(tasks: list[int], data: dict, figures: list[str], headline: str) -> str:
    lines = ["# Continual evaluation report", "", f"Tasks evaluated: {tasks}", "", f"**Headline:** {headline}", ""]
    if data["summary"]:
        lines += [
            "| metric | better | average final | average incremental (AIQ) | forgetting | backward transfer |",
            "|---|---|---|---|---|---|",
        ]
        for name, s in data["summary"].items():
            better = "higher ↑" if data["higher_is_better"][name] else "lower ↓"
            lines.append(
                f"| {name} | {better} | {s['average_final']:.4f} | {s['average_incremental']:.4f} | "
                f"{s['forgetting']:.4f} | {s['backward_transfer']:+.4f} |"
            )
        lines += [
            "",
            "Forgetting and backward transfer are measured in each metric's *better* direction, so for every metric "
            "(accuracy and FID alike) **forgetting > 0 and backward transfer < 0 mean earlier tasks got worse**: "
            "forgetting is the mean worsening from a task's best earlier score to its final one, backward transfer "
            "the mean change from just after learning the task to the end (negative: worse, positive: better).",
            "",
        ]
    for name, values in data["curves"].items():
        lines.append(f"- {name} after each task: " + ", ".join(f"{v:.4f}" for v in values))
    lines += ["", "R[k][i] is the score on task i after training task k. Data: `metrics.json`, `metrics.csv`.", ""]
    lines += [f"![{os.path.basename(f)}]({os.path.basename(f)})" for f in figures]
    return "\n".join(lines) + "\n"


def _class_order_lines(data: dict) -> str:
    """The class order the tasks were cut from, as the task file records it ("" if it does not); the class names are
    the file's text, escaped so that they read as text, not as Markdown or HTML."""
    order, names = data.get("class_order"), data.get("class_names")
    if not order:
        return ""
    shown = [f"{c} ({markdown_text(names[c])})" if names and c < len(names) else str(c) for c in order]
    return f"\nClass order (from the task file): {', '.join(shown)}\n"
