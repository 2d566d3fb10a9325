"""The report's pictures read on their own: sample grids name their rows, curves.png is a grid of panels with the
better direction on every y axis and one legend, and the headline leads with accuracy and forgetting."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from continual_diffusers.evaluation.figures import better_label
from continual_diffusers.evaluation.generate import write_samples
from continual_diffusers.evaluation.report import ContinualReport
from continual_diffusers.utils.images import grid_row_labels, make_grid, row_label, write_grid

SEVEN = ("accuracy", "frechet", "kid", "copy_fraction", "precision", "recall", "train_distance_ratio")


def _three_task_report() -> ContinualReport:
    report = ContinualReport()
    for k in range(1, 4):
        metrics = {name: {t: 0.5 + 0.1 * t - 0.05 * (k - t) for t in range(1, k + 1)} for name in SEVEN}
        metrics["num_generated"] = dict.fromkeys(range(1, k + 1), 4.0)
        metrics["num_real"] = dict.fromkeys(range(1, k + 1), 8.0)
        report.add(k, metrics)
    return report


def test_curves_are_a_grid_of_panels_with_directions_and_one_legend(tmp_path):
    report = _three_task_report()
    report.write(str(tmp_path))
    width, height = Image.open(tmp_path / "curves.png").size
    assert width <= 1500 and width / height < 2, (width, height)  # 3 columns, not 7 panels in one 3465×385 row
    assert better_label("accuracy") == "accuracy ↑" and better_label("frechet") == "oracle-feature FID ↓"
    assert better_label("train_distance_ratio") == "train_distance_ratio (ideal 1)"


def test_headline_leads_with_accuracy_and_forgetting_and_leaves_the_rest_to_the_table():
    headline = _three_task_report().headline()
    assert headline.startswith("accuracy ") and "forgetting" in headline.split(";")[0]
    assert "oracle-feature FID" in headline and "N = 4 generated vs M = 8 real images" in headline
    assert not any(name in headline for name in ("precision", "recall", "copy_fraction", "KID"))


def _margin_has_text(png: str, rows: int, margin: int) -> bool:
    """Dark (text) pixels in the left margin of every one of `rows` equal bands."""
    pixels = np.asarray(Image.open(png).convert("L"))
    bands = np.array_split(pixels[:, :margin], rows)
    return all((band < 128).any() for band in bands)


def test_sample_grids_name_their_rows(tmp_path):
    images = torch.rand(6, 3, 8, 8) * 2 - 1
    grid = make_grid(images, nrow=3)
    plain = Image.open(write_grid(grid, str(tmp_path / "plain.png")))
    labels = ["task 1 · class 0 (zero)", "task 1 · class 1 (one)"]
    labelled = Image.open(write_grid(grid, str(tmp_path / "labelled.png"), row_labels=labels))
    margin = labelled.width - plain.width
    assert margin > 50 and labelled.height == plain.height
    assert _margin_has_text(str(tmp_path / "labelled.png"), 2, margin)
    # what the end-of-task grid (samples.png) writes beside its rows, from the run's spec
    spec = SimpleNamespace(classes_per_task={"1": [0, 1], "2": [2, 3]}, class_names=("zero", "one", "two", "three"))
    assert grid_row_labels([0, 3], spec) == labels[:1] + ["task 2 · class 3 (three)"]
    assert grid_row_labels([None], spec) == ["unconditional"] and grid_row_labels([torch.zeros(2)], spec) is None
    assert row_label("a photo of a very long prompt indeed") == "a photo of a very long …"
    # evaluate.py's samples.png: one class per row, named with its task and class name when the spec knows them
    write_samples(str(tmp_path / "eval"), images, [4, 4, 4, 7, 7, 7], per_row=3)
    assert _margin_has_text(str(tmp_path / "eval" / "samples.png"), 2, 40)
    write_samples(str(tmp_path / "eval2"), images, [0, 0, 0, 3, 3, 3], 3, spec)
    named, ids = (Image.open(str(tmp_path / name / "samples.png")) for name in ("eval2", "eval"))
    assert named.width > ids.width  # "task 2 · class 3 (three)" needs a wider margin than "class 7"
