"""Unknown flags and an image folder given as --data_path are refused with one `error:` line (exit 2) that says what
was meant: the closest flag, diffusers' common names mapped to ours, and the command that writes task files from
an image folder. The same for main_ddpm.py, main_ldm.py and evaluate.py."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import evaluate
import main_ddpm
import main_ldm


def _error(capsys, module, argv) -> str:
    capsys.readouterr()
    try:
        code = module.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize(
    "module, required",
    [(main_ddpm, []), (main_ldm, ["--pretrained_model_name_or_path", "sd"]), (evaluate, ["--model_path", "m"])],
)
def test_unknown_flags_get_the_closest_flag_and_diffusers_names(module, required, capsys, tmp_path):
    line = _error(capsys, module, [*required, "--output_dir", tmp_path / "out", "--lr", "1e-4", "--seeed", "3"])
    assert "unrecognized arguments: --lr 1e-4 --seeed 3" in line
    assert "use --learning_rate for --lr" in line or module is evaluate  # evaluate.py does not train
    assert "did you mean --seed?" in line
    assert not (tmp_path / "out").exists()


def test_training_flags_of_diffusers_scripts_map_to_ours(capsys, tmp_path):
    line = _error(capsys, main_ddpm, ["--num_train_epochs", "3", "--buffer-size", "3", "--train_data_dir", "imgs"])
    assert "use --num_epochs for --num_train_epochs" in line
    assert "did you mean --buffer_size?" in line
    assert "use --data_path for --train_data_dir" in line and "python -m continual_diffusers.data from-folder" in line
    assert "did you mean --num_samples?" in _error(capsys, evaluate, ["--model_path", "m", "--num_sample", "3"])


@pytest.mark.parametrize("module", [main_ddpm, main_ldm])
def test_an_image_folder_as_data_path_says_how_to_convert_it(module, tmp_path, capsys):
    root = tmp_path / "images"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / name / "0.png")
    out = tmp_path / "out"
    argv = ["--data_path", root, "--output_dir", out]
    if module is main_ldm:
        argv += ["--pretrained_model_name_or_path", "sd", "--validation_prompts", "a cat"]
    line = _error(capsys, module, argv)
    assert f"--data_path {root} is a folder of images, not a task file" in line
    assert f"python -m continual_diffusers.data from-folder {root} --classes_per_task 2" in line
    assert not out.exists()


def test_a_tracker_that_is_not_installed_is_refused_before_training(tmp_path, capsys, monkeypatch):
    import importlib.util

    from continual_diffusers.training.build import make_accelerator
    from continual_diffusers.training.train_config import TrainConfig
    from continual_diffusers.utils.errors import UserInputError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    out = tmp_path / "out"
    line = _error(capsys, main_ddpm, ["--logger", "wandb", "--output_dir", out, "--max_train_steps", "1"])
    assert "--logger wandb needs the wandb package, which is not installed" in line and not out.exists()
    with pytest.raises(UserInputError, match="--logger wandb needs the wandb package"):  # the library alike
        make_accelerator(TrainConfig(output_dir=str(out)), log_with="wandb")


def _image_folder(root):
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / name / "0.png")
    return root


def test_an_image_folder_as_test_data_path_says_how_to_convert_it(tmp_path, capsys):
    """Every flag that reads a task file refuses a folder of images the same way (`data.load_task_file`)."""
    from continual_diffusers.evaluation import __main__ as evaluation_main

    root, out = _image_folder(tmp_path / "images"), tmp_path / "out"
    argv = ["--eval_every_task", "--test_data_path", root, "--output_dir", out, "--max_train_steps", "1"]
    line = _error(capsys, main_ddpm, argv)
    assert f"--test_data_path {root} is a folder of images, not a task file" in line and not out.exists()
    line = _error(capsys, evaluation_main, ["train-oracle", "--test_data_path", root, "--output_dir", out])
    assert f"--test_data_path {root} is a folder of images" in line and "from-folder" in line and not out.exists()
    line = _error(capsys, evaluation_main, ["train-oracle", "--data_path", tmp_path / "none.npz", "--output_dir", out])
    assert "none.npz: no such task file or task folder" in line
