"""benchmarks/compare_strategies.py on a user's own task files (--data_path / --test_data_path): the methods are sized
from the file and bad files refused (fast, in-process); the whole table on a tiny model, one optimizer step per task,
one seed, with its sample sizes and the replay row's buffer attraction beside its references (slow); and --merge
building the table from output dirs' finished runs and results files."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import TINY_FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The model-size flags of the tiny test model; the benchmark sets batch size, logger and seed itself.
MODEL = " ".join(TINY_FLAGS[: TINY_FLAGS.index("--eval_batch_size")])


@pytest.mark.slow  # ~40 s of CPU: four Python processes (the script, the oracle, two runs)
def test_the_table_runs_on_a_users_task_files(tmp_path, task_file):
    data = task_file(per_task=16)
    out = tmp_path / "cmp"
    cmd = [
        *[sys.executable, os.path.join(ROOT, "benchmarks", "compare_strategies.py"), "--output_dir", str(out)],
        *["--data_path", data, "--test_data_path", data, "--methods", "replay_1pct", "joint", "--seeds", "0"],
        *["--steps_per_task", "1", "--batch_size", "4", "--eval_num_samples", "4", "--run_flags", MODEL],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "N = 4 generated vs M = 16 real images per task" in result.stdout
    rows = json.loads((out / "results.json").read_text())["results"]
    replay = rows["replay_1pct"][0]
    assert replay["buffer_share"] == 1 / 16 and 0 <= replay["joint_attraction"] <= 1  # 1 % of 32 images: 1 image
    assert "buffer_attraction" not in rows["joint"][0]
    assert "| replay_1pct | 1 |" in result.stdout and "| joint | 1 |" in result.stdout
    bad = subprocess.run([*cmd[:2], "--data_path", data], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "--data_path and --test_data_path go together" in bad.stderr


def _finished(folder, method: str, seed: int, accuracy: float, **extra) -> dict:
    """A finished run as compare_strategies leaves it: <method>_seed<n>/finished.json (and the run's config.json)."""
    run = folder / f"{method}_seed{seed}"
    run.mkdir(parents=True)
    row = {
        **{"run_dir": str(run), "accuracy": accuracy, "forgetting": 1 - accuracy, "frechet": 50 * (1 - accuracy)},
        **{"num_generated": [50], "num_real": [36], "sampler": f"ddpm, 25 steps, guidance 2.0, seed {seed}"},
        **{"seconds": 60.0, "copy_fraction": 0.0, "precision": 0.9, "recall": 0.5, "abs_log_distance_ratio": 0.2},
        **extra,
    }
    (run / "finished.json").write_text(json.dumps(row))
    args = {"data_path": None, "test_data_path": None, "oracle_path": str(folder / "oracle"), "eval_num_samples": 50}
    (run / "config.json").write_text(json.dumps({"args": args}))
    return row


def test_merge_builds_the_table_from_output_dirs_and_results_files(tmp_path):
    """Rows come from each output dir's finished runs (a run whose invocation is still going, or whose results.json
    a later invocation rewrote, counts once it has its finished.json) and from results files, each run once."""
    a, b = tmp_path / "a", tmp_path / "b"
    for seed, acc in enumerate((0.10, 0.11, 0.09)):
        _finished(a, "naive", seed, acc)
        _finished(a, "joint", seed, 1.0)
    replay = [
        _finished(b, "replay_1pct", seed, acc, buffer_attraction=0.2, buffer_share=0.01, joint_attraction=0.01)
        for seed, acc in enumerate((0.55, 0.60, 0.58))
    ]
    (b / "replay_1pct_seed3").mkdir()  # still running: no finished.json
    results = tmp_path / "results.json"  # an earlier invocation's file holding one of the same runs
    results.write_text(json.dumps({"args": {}, "results": {"replay_1pct": replay[:1]}}))
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "compare_strategies.py"), "--merge"]
    out = subprocess.run([*cmd, str(a), str(b), str(results)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "N = 50 generated vs M = 36 real images per task; evaluation sampler: ddpm, 25 steps, guidance 2.0" in (
        out.stdout
    )
    assert "| 0% | 1 min | – |" in out.stdout  # no teacher: no teacher time
    assert "| naive | 3 | 0.100 ± 0.025 |" in out.stdout and "| replay_1pct | 3 | 0.577 ± 0.063 |" in out.stdout
    assert (
        "| replay_1pct | 0.000 ± 0.000 | 0.20 ± 0.00 | 0.90 ± 0.00 | 0.50 ± 0.00 | 0.200 ± 0.000 | 0.010 ± 0.000 |"
        in out.stdout
    )
    assert "accuracy CIs pairwise disjoint: naive, replay_1pct, joint" in out.stdout
    methods = [line.split("|")[1].strip() for line in out.stdout.splitlines() if line.startswith("| ")]
    assert methods[:4] == ["method", "naive", "joint", "replay_1pct"]  # the catalogue's order
    missing = subprocess.run([*cmd, str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.splitlines() == [
        f"error: --merge {tmp_path / 'nowhere'}: no such results file or output dir"
    ]
    (tmp_path / "other.json").write_text('{"rows": []}')
    other = subprocess.run([*cmd, str(tmp_path / "other.json")], capture_output=True, text=True, timeout=60)
    assert other.returncode == 2 and other.stderr.startswith(f"error: --merge {tmp_path / 'other.json'}: not a ")
    assert len(other.stderr.splitlines()) == 1


def _benchmark():
    """benchmarks/compare_strategies.py as a module (run in-process: one import for all the cases)."""
    spec = importlib.util.spec_from_file_location(
        "compare_strategies", os.path.join(ROOT, "benchmarks", "compare_strategies.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_methods_are_sized_from_the_users_task_file_and_bad_files_are_refused(
    tmp_path, task_file, monkeypatch, capsys
):
    """--data_path sets the buffers (1 % and 10 % of the user's training images); a task file without class labels
    or one that does not exist, or an unknown method, is refused with one error line, exit 2 and nothing written."""
    benchmark = _benchmark()
    data = task_file(per_task=100)  # 2 tasks × 100 images
    argv = ["compare_strategies.py", "--output_dir", str(tmp_path / "o")]
    monkeypatch.setattr(sys, "argv", [*argv, "--data_path", data, "--test_data_path", data, "--list_methods"])
    benchmark.main()
    flags = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert "--buffer_size 2 " in flags["replay_1pct"] and "--buffer_size 20 " in flags["replay_10pct"]
    text = task_file("text")
    for bad, message in [
        (["--data_path", text, "--test_data_path", text], "error: the table needs class labels (oracle accuracy)"),
        (["--data_path", data, "--test_data_path", str(tmp_path / "no.npz")], "error: "),
        (["--data_path", data, "--test_data_path", data, "--methods", "nope"], "error: unknown methods ['nope']"),
    ]:
        monkeypatch.setattr(sys, "argv", [*argv, *bad])
        with pytest.raises(SystemExit) as exit_:
            benchmark.main()
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and len(err.splitlines()) == 1 and err.startswith(message), err
    assert not (tmp_path / "o").exists()
