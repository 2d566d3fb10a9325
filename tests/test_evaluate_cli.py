"""evaluate.py on a tiny trained model: samples on disk, label handling, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY_FLAGS

import evaluate
import main_ddpm


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import make_tasks

    from continual_diffusers.data import save_tasks

    root = tmp_path_factory.mktemp("eval")
    data = str(root / "tasks.npz")
    save_tasks(data, make_tasks("class"))
    out = root / "run"
    assert main_ddpm.main([str(a) for a in ["--data_path", data, "--output_dir", out, "--max_train_steps", 1,
                                            *TINY_FLAGS, "--classifier_free_guidance", "--use_ema"]]) == 0
    return out


def test_samples_every_seen_class_by_default(trained, tmp_path):
    out = tmp_path / "eval"
    argv = ["--model_path", trained / "task_2", "--output_dir", out, "--num_samples", 3, "--num_inference_steps", 2,
            "--guidance_scale", 3]
    assert evaluate.main([str(a) for a in argv]) == 0
    saved = np.load(out / "samples.npz", allow_pickle=False)
    assert saved["images"].shape == (12, 8, 8, 3) and saved["images"].dtype == np.uint8
    assert list(saved["labels"]) == [str(c) for c in (0, 1, 2, 3) for _ in range(3)]
    assert (out / "samples.png").is_file() and len(list((out / "samples").glob("*.png"))) == 12


def test_same_seed_same_samples(trained, tmp_path):
    runs = []
    for name in ("a", "b"):
        argv = ["--model_path", trained / "task_1", "--output_dir", tmp_path / name, "--num_samples", 2,
                "--num_inference_steps", 2, "--class_labels", 1, "--scheduler", "ddpm"]
        assert evaluate.main([str(a) for a in argv]) == 0
        runs.append(np.load(tmp_path / name / "samples.npz")["images"])
    assert np.array_equal(*runs)


@pytest.mark.parametrize("flags, message", [
    (["--class_labels", "7"], "out of range"),
    (["--guidance_scale", "-2"], "--guidance_scale must be >= 0"),
    (["--num_samples", "0"], "--num_samples must be >= 1"),
])
def test_bad_sampling_flags(trained, tmp_path, capsys, flags, message):
    assert evaluate.main([str(a) for a in ["--model_path", trained / "task_2", "--output_dir", tmp_path, *flags]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_not_a_task_folder(tmp_path, capsys):
    assert evaluate.main(["--model_path", str(tmp_path)]) == 2
    assert "not an exported task model" in capsys.readouterr().err
