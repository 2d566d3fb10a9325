"""The report's figures (`plots`): a heat-map of R[k][i] per metric, the per-task curves (a grid of panels, each
with its better direction on the y axis, one legend for all) and the sheet of every task's samples.png."""

from __future__ import annotations

import math
import os

from .directions import BOUNDED, DERIVED, HIGHER_IS_BETTER, NOT_SUMMARISED, SAMPLE_SIZE_DEPENDENT, display_name

SHOWN_UNSUMMARISED = ("task_share",)  # matrices drawn although not summarised (its ideal changes with k)


def is_drawn(name: str) -> bool:
    return name not in NOT_SUMMARISED or name in SHOWN_UNSUMMARISED


def plots(out_dir: str, tasks: list[int], data: dict, grids: dict[int, str]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    shown = {name: rows for name, rows in data["matrices"].items() if is_drawn(name)}
    sizes = data["sample_sizes"]["text"]
    for name, rows in shown.items():
        files.append(_heatmap(plt, out_dir, name, tasks, rows, sizes))
    if shown:
        files.append(_curves(plt, out_dir, tasks, shown, sizes))
    if grids:
        files.append(_sheet(plt, out_dir, grids))
    return files


def _title(name: str, sizes: str) -> str:
    """A figure's title: the name a user reads, and N and M for FID / KID."""
    return display_name(name) + (f"\n({sizes})" if name in SAMPLE_SIZE_DEPENDENT and sizes else "")


def _heatmap(plt, out_dir: str, name: str, tasks: list[int], rows: list[list[float]], sizes: str) -> str:
    t = len(rows)
    grid = [[rows[k][i] if i <= k else math.nan for i in range(t)] for k in range(t)]
    # The colour says how good a cell is: the distance ratio is coloured by |log r| (its ideal 1 is the darkest
    # good colour, copies and off-data samples both get worse), everything else by its own value.
    derived = {source: (n, f) for n, (source, f) in DERIVED.items()}
    colour_name, transform = derived.get(name, (name, lambda v: v))
    shade = [[transform(v) if v == v else math.nan for v in row] for row in grid]
    higher = HIGHER_IS_BETTER.get(colour_name, True)
    fig, ax = plt.subplots(figsize=(1.2 * t + 2.5, 1.0 * t + 1.7))
    values = [v for row in shade for v in row if v == v and math.isfinite(v)]
    lo, hi = (0.0, 1.0) if name in BOUNDED else (min(values, default=0.0), max(values, default=1.0))
    im = ax.imshow(shade, cmap="viridis" if higher else "viridis_r", vmin=lo, vmax=hi)
    for k in range(t):
        for i in range(k + 1):
            level = (shade[k][i] - lo) / (hi - lo) if hi > lo else 0.5
            bright = level > 0.6 if higher else level < 0.4
            ax.text(i, k, f"{grid[k][i]:.2f}", ha="center", va="center", color="k" if bright else "w", fontsize=9)
    ax.set_xticks(range(t), [f"task {x}" for x in tasks])
    ax.set_yticks(range(t), [f"after {x}" for x in tasks])
    ax.set_xlabel("evaluated task i")
    ax.set_ylabel("after training task k")
    if colour_name != name:
        how = f"ideal 1; colour: {display_name(colour_name)}, lower is better"
    elif name == "task_share":
        how = "ideal: the task's share of the seen data, 1/(k+1) for equal tasks"
    else:
        how = f"{'higher' if higher else 'lower'} is better"
    ax.set_title(f"{_title(name, sizes)} R[k][i] ({how})", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path = os.path.join(out_dir, f"heatmap_{name}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


CURVE_COLUMNS = 3  # panels per row of curves.png: readable at a glance, however many metrics


def better_label(name: str) -> str:
    """A y-axis label with the better direction: "accuracy ↑", "oracle-feature FID ↓", "r (ideal 1)"."""
    if name == "train_distance_ratio":
        return f"{name} (ideal 1)"
    if name == "task_share":
        return f"{name} (ideal 1/(k+1))"
    return f"{display_name(name)} {'↑' if HIGHER_IS_BETTER.get(name, True) else '↓'}"


def _curves(plt, out_dir: str, tasks: list[int], matrices: dict, sizes: str) -> str:
    """curves.png: one panel per metric, R[k][i] of every task i against k, in a grid of `CURVE_COLUMNS` columns,
    with one legend (the tasks) for all panels."""
    columns = min(CURVE_COLUMNS, len(matrices))
    rows_of_panels = math.ceil(len(matrices) / columns)
    fig, axes = plt.subplots(
        rows_of_panels, columns, figsize=(4.2 * columns, 3.3 * rows_of_panels + 0.7), squeeze=False
    )
    for ax, (name, rows) in zip(axes.flat, matrices.items()):
        for i, task in enumerate(tasks):
            ax.plot(tasks[i:], [rows[k][i] for k in range(i, len(rows))], marker="o", label=f"task {task}")
        ax.set_xlabel("after training task")
        ax.set_ylabel(better_label(name), fontsize=9)
        ax.set_title(_title(name, sizes), fontsize=9)
        ax.set_xticks(tasks)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(matrices) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    legend_rows = math.ceil(len(tasks) / 10)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(tasks), 10), title="evaluated task", fontsize=8)
    fig.tight_layout(rect=(0, min(0.4, (0.35 + 0.25 * legend_rows) / fig.get_figheight()), 1, 1))
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
