"""examples/continual_replay.ipynb runs: its code cells are executed in order in one namespace (as a kernel would),
with the "parameters" cell's settings made tiny (papermill's convention), and what it computes and writes is
checked, so the notebook cannot drift from the API."""

from __future__ import annotations

import json
import math
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "examples", "continual_replay.ipynb")
TINY = {"STEPS_PER_TASK": 2, "EVAL_SAMPLES": 4, "ORACLE_EPOCHS": 1, "SAMPLING_STEPS": 2}


def code_cells(path: str) -> list[tuple[list[str], str]]:
    """(tags, source) of each code cell of an nbformat-4 notebook, in order."""
    with open(path, encoding="utf-8") as fh:
        notebook = json.load(fh)
    assert notebook["nbformat"] == 4
    cells = []
    for cell in notebook["cells"]:
        assert cell["cell_type"] in ("markdown", "code") and "id" in cell
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None  # committed without outputs
            cells.append((cell["metadata"].get("tags", []), "".join(cell["source"])))
    return cells


def test_the_notebook_has_one_parameters_cell_first():
    cells = code_cells(NOTEBOOK)
    assert [n for n, (tags, _) in enumerate(cells) if "parameters" in tags] == [0]
    namespace = {}
    exec(cells[0][1], namespace)
    assert set(TINY) <= set(namespace)


def test_the_notebook_runs(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    for n, (tags, source) in enumerate(code_cells(NOTEBOOK)):
        exec(compile(source, f"continual_replay.ipynb, code cell {n}", "exec"), namespace)
        if "parameters" in tags:
            namespace.update(TINY)
    plt.close("all")

    out = tmp_path / namespace["OUTPUT_DIR"]
    for name in ("task_1/model_index.json", "task_2/unet", "samples_after_task_2.png", "forgetting_matrix.png"):
        assert (out / name).exists(), name
    assert namespace["trainer"].position.seen_tasks == [1, 2]
    assert (
        namespace["out"].images.shape == (16, 8, 8, 1)
        and namespace["out"].labels == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    )
    R = namespace["R"]
    assert R.shape == (2, 2) and math.isnan(R[0, 1])
    lower = [float(R[0, 0]), float(R[1, 0]), float(R[1, 1])]
    assert all(0.0 <= value <= 1.0 for value in lower)
    assert all(value * 4 == round(value * 4) for value in lower)  # accuracies of 4 samples per task
    assert 0.0 <= namespace["oracle_accuracy"] <= 1.0
    assert namespace["summary"]["forgetting"] == pytest.approx(float(R[0, 0] - R[1, 0]))
