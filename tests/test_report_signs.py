"""One sign convention for forgetting and backward transfer across metric directions (evaluation/continual_metrics):
both are measured in the metric's "better" direction, so forgetting > 0 and BWT < 0 mean a task got worse, for a
higher-is-better metric (accuracy) and a lower-is-better one (feature FID) alike; the report files say the same."""

from __future__ import annotations

import json

import pytest

from continual_diffusers.evaluation import ContinualReport
from continual_diffusers.evaluation import continual_metrics as cm

# After task k (rows) the score on task i (columns). Task 0 gets worse after task 1 and partly recovers; task 1
# gets better. Accuracy: higher is better; FID: lower is better, its matrix mirrors the accuracy story.
ACCURACY = [[0.90], [0.50, 0.80], [0.60, 0.85, 0.95]]
FID = [[10.0], [40.0, 12.0], [30.0, 11.0, 9.0]]
# Hand-computed over tasks 0..T−2 = {0, 1}:
#   accuracy  forgetting = ((0.90 − 0.60) + (0.80 − 0.85)) / 2 = 0.125,  BWT = ((0.60 − 0.90) + (0.85 − 0.80)) / 2
#   FID       forgetting = ((30 − 10) + (11 − 12)) / 2 = 9.5,          BWT = −((30 − 10) + (11 − 12)) / 2
EXPECTED = {
    "accuracy": {"forgetting": 0.125, "backward_transfer": -0.125},
    "frechet": {"forgetting": 9.5, "backward_transfer": -9.5},
}


@pytest.mark.parametrize(
    "rows, higher, forgetting, bwt",
    [
        (ACCURACY, True, 0.125, -0.125),
        (FID, False, 9.5, -9.5),
        # A single task that only got worse: forgetting > 0 and BWT < 0 whatever the direction.
        ([[0.9], [0.7, 0.8]], True, 0.2, -0.2),
        ([[10.0], [11.136, 5.0]], False, 1.136, -1.136),  # a forgotten task's FID: BWT was +1.136
        # ... and one that only got better: forgetting < 0 and BWT > 0.
        ([[0.7], [0.9, 0.8]], True, -0.2, 0.2),
        ([[12.0], [10.0, 5.0]], False, -2.0, 2.0),
    ],
)
def test_forgetting_and_bwt_signs_by_hand(rows, higher, forgetting, bwt):
    r = cm.as_matrix(rows)
    assert cm.forgetting(r, higher_is_better=higher) == pytest.approx(forgetting)
    assert cm.backward_transfer(r, higher_is_better=higher) == pytest.approx(bwt)
    summary = cm.summarize(r, higher_is_better=higher)
    assert summary["forgetting"] == pytest.approx(forgetting) and summary["backward_transfer"] == pytest.approx(bwt)


def test_forgetting_takes_the_best_earlier_score_not_the_first():
    # Task 0: accuracy 0.5 → 0.9 → 0.6: forgetting counts from the best earlier 0.9, BWT from R[0][0] = 0.5.
    r = cm.as_matrix([[0.5], [0.9, 0.8], [0.6, 0.8, 0.7]])
    assert cm.forgetting(r) == pytest.approx(((0.9 - 0.6) + (0.8 - 0.8)) / 2)
    assert cm.backward_transfer(r) == pytest.approx(((0.6 - 0.5) + (0.8 - 0.8)) / 2)
    fid = cm.as_matrix([[20.0], [10.0, 5.0], [15.0, 5.0, 7.0]])  # the same story for a lower-is-better metric
    assert cm.forgetting(fid, higher_is_better=False) == pytest.approx(((15 - 10) + (5 - 5)) / 2)
    assert cm.backward_transfer(fid, higher_is_better=False) == pytest.approx(((20 - 15) + (5 - 5)) / 2)


def test_report_files_follow_the_convention(tmp_path):
    report = ContinualReport()
    for k, (acc_row, fid_row) in enumerate(zip(ACCURACY, FID)):
        report.add(k + 1, {"accuracy": dict(enumerate(acc_row, 1)), "frechet": dict(enumerate(fid_row, 1))})
    report.write(str(tmp_path))
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["higher_is_better"] == {"accuracy": True, "frechet": False}
    for name, expected in EXPECTED.items():
        for key, value in expected.items():
            assert data["summary"][name][key] == pytest.approx(value), (name, key)
    md = (tmp_path / "report.md").read_text()
    assert "| accuracy | higher ↑ | " in md and "| oracle-feature FID | lower ↓ | " in md
    assert "| 0.1250 | -0.1250 |" in md and "| 9.5000 | -9.5000 |" in md
    assert "forgetting > 0 and backward transfer < 0 mean earlier tasks got worse" in md


# The demo's plain fine-tuning run (5 digit tasks, v-prediction, seed 0, 60 samples per task): after task k (rows)
# the score on task i; every earlier task is forgotten (accuracy → 0, FID ≫, samples far from the training set).
DEMO_NAIVE = {
    "accuracy": [[1.0], [0.0, 1.0], [0.0, 0.0, 0.95], [0.0, 0.0, 0.017, 0.983], [0.0, 0.0, 0.0, 0.0, 0.983]],
    "copy_fraction": [[0.0], [0.0, 0.0], [0.0, 0.0, 0.0], [0.0] * 4, [0.0] * 5],
    "frechet": [[2.3], [123.5, 3.2], [103.7, 99.2, 2.6], [115.3, 147.1, 85.2, 2.6], [102.5, 83.8, 88.3, 101.2, 5.4]],
    "kid": [[-0.03], [3.30, -0.02], [2.05, 2.79, -0.04], [3.64, 4.57, 2.46, -0.03], [2.41, 2.23, 1.97, 2.10, 0.0]],
    "precision": [[0.98], [0.0, 0.97], [0.0, 0.03, 0.8], [0.02, 0.0, 0.02, 0.95], [0.0, 0.33, 0.05, 0.0, 0.9]],
    "recall": [[0.61], [0.0, 0.42], [0.08, 0.03, 0.76], [0.0, 0.0, 0.11, 0.81], [0.0, 0.49, 0.36, 0.01, 0.44]],
    "train_distance_ratio": [
        [0.87],
        [8.55, 0.93],
        [7.49, 5.23, 1.19],
        [8.48, 8.96, 6.91, 0.94],
        [9.27, 5.94, 7.05, 7.89, 0.95],
    ],
}


def test_a_forgotten_run_shows_no_positive_backward_transfer_on_any_metric(tmp_path):
    """Every summarised metric of the demo's naive run reads as "earlier tasks got worse" (or unchanged): BWT ≤ 0
    and forgetting ≥ 0. The distance ratio summarised as "higher is better" reported BWT +6.3 here."""
    report = ContinualReport()
    for k in range(5):
        report.add(k + 1, {name: dict(enumerate(rows[k], 1)) for name, rows in DEMO_NAIVE.items()})
    summary = report.summary()
    with_bwt = {name for name, s in summary.items() if "backward_transfer" in s}
    assert with_bwt == set(DEMO_NAIVE) - {"train_distance_ratio"} | {"abs_log_train_distance_ratio"}
    for name in with_bwt:
        assert summary[name]["backward_transfer"] <= 0 and summary[name]["forgetting"] >= 0, name
    report.write(str(tmp_path))
    rows = [line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("| ")]
    bwt_cells = [line.split("|")[-2].strip() for line in rows[2:] if line.split("|")[-2].strip() not in ("–", "")]
    assert bwt_cells and all(not cell.startswith("+") and float(cell) <= 0 for cell in bwt_cells), bwt_cells
