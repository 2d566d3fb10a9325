"""Bad-input corpus for the command-line tools (main_ddpm.py, evaluate.py): task files in both formats, contradictory
or out-of-range flags, checkpoints and exported models that do not fit. Every case must end with exit code 2 and
exactly one `error: …` line naming the problem (no traceback), and must leave the output directory exactly as it
was (it holds a sentinel file and a complete checkpoint before the call; their bytes are compared afterwards).

Cases are (id, argv builder, expected message fragment); a builder gets the `Inputs` fixture and returns the argv
without --output_dir. The task-file validation itself (40 malformed files at the loader level) is in
tests/test_bad_task_files.py; here a few of them go through the training CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_FLAGS, make_tasks, tiny_class_unet

import evaluate
import main_ddpm
from continual_diffusers.data import TaskSequence, save_tasks
from continual_diffusers.data.tasks import FORMAT
from continual_diffusers.training import checkpoint as ckpt


@dataclass
class Inputs:
    root: Path
    tasks: str  # 2 class tasks, 8×8 RGB
    text_tasks: str
    test_one_task: str  # test images of task 1 only
    clip: str
    ckpt_other_arch: str  # a complete checkpoint of a (16, 32) UNet
    ckpt_ewc: str  # a complete checkpoint of the right UNet written by an EWC run
    ckpt_torn: str  # training_state.json present, model.safetensors missing
    export: str  # a valid exported class model (task_2 of a 4-class run with CFG)
    export_no_unet: str
    export_bad_json: str
    export_fewer_classes: str  # metadata says 4 classes, the UNet has 2 class embeddings
    a_file: str  # a regular file (an output dir below it cannot be created)


def _legacy(path: Path, tasks: dict) -> str:
    np.savez(path, data_structure=pickle.dumps(tasks))
    return str(path)


def _safe(path: Path, **arrays) -> str:
    np.savez(path, format=np.array(FORMAT), **arrays)
    return str(path)


def _checkpoint(root: Path, name: str, unet, strategy: str) -> str:
    parts = {
        "model_state": unet.state_dict(),
        "ema_state": None,
        "optimizer_state": None,
        "lr_scheduler_state": None,
        "scaler_state": None,
        "strategy_state": {},
    }
    state = {"task_index": 1, "step_in_task": 0, "global_step": 2, "seen_tasks": [1], "strategy": strategy}
    return ckpt.save_checkpoint(str(root / name), 2, parts, state)


def _export(root: Path, name: str, unet, num_classes: int = 4) -> str:
    from diffusers import DDPMScheduler

    meta = {
        "format": "continual-diffusers/model-v1",
        "conditioning": "class",
        "num_classes": num_classes,
        "null_class_index": num_classes,
        "classifier_free_guidance": True,
        "energy_type": None,
        "prediction_type": "epsilon",
        "resolution": 8,
        "in_channels": 3,
        "classes_per_task": {"1": [0, 1], "2": [2, 3]},
        "validation_prompts": [],
        "task_id": 2,
        "seen_tasks": [1, 2],
        "global_step": 4,
    }
    return ckpt.export_task(str(root / name / "task_2"), unet, None, DDPMScheduler(num_train_timesteps=10), meta)


def _right_unet():
    """The UNet main_ddpm builds from TINY_FLAGS on the 4-class task file without CFG."""
    from continual_diffusers.models.unet import UNetSpec, build_unet

    spec = UNetSpec(8, 3, "class", num_classes=4, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)
    return build_unet(spec)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_clip_dir) -> Inputs:
    from diffusers import UNet2DModel

    root = tmp_path_factory.mktemp("bad_inputs")
    tasks = str(root / "tasks.npz")
    save_tasks(tasks, make_tasks("class"))
    text_tasks = str(root / "text.npz")
    save_tasks(text_tasks, make_tasks("text"))
    test_one = str(root / "test1.npz")
    save_tasks(test_one, TaskSequence((make_tasks("class")[1],)))
    right = _right_unet()
    torch.manual_seed(0)
    other = UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 32), norm_num_groups=4,
        layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        num_class_embeds=4,
    )  # fmt: skip
    torn = _checkpoint(root, "torn", right, "naive")
    os.remove(os.path.join(torn, ckpt.MODEL_FILE))
    export = _export(root, "export", tiny_class_unet(5))
    no_unet = _export(root, "no_unet", tiny_class_unet(5))
    shutil.rmtree(os.path.join(no_unet, "unet"))
    bad_json = _export(root, "bad_json", tiny_class_unet(5))
    Path(bad_json, "continual_diffusers.json").write_text('{"conditioning": "class", ')
    a_file = root / "a_file"
    a_file.write_text("not a folder\n")
    return Inputs(
        root=root,
        tasks=tasks,
        text_tasks=text_tasks,
        test_one_task=test_one,
        clip=tiny_clip_dir,
        ckpt_other_arch=_checkpoint(root, "other", other, "naive"),
        ckpt_ewc=_checkpoint(root, "ewc", right, "ewc"),
        ckpt_torn=torn,
        export=export,
        export_no_unet=no_unet,
        export_bad_json=bad_json,
        export_fewer_classes=_export(root, "fewer", tiny_class_unet(2)),
        a_file=str(a_file),
    )


def _file(builder):
    """A case whose task file is written by `builder(path)` into the fixture's folder."""

    def argv(i: Inputs) -> list:
        path = i.root / f"case_{abs(hash(builder))}.npz"
        return ["--data_path", builder(path)]

    return argv


def _flags(*flags, data: str = "tasks"):
    return lambda i: ["--data_path", getattr(i, data), *flags]


IMGS = np.zeros((2, 8, 8, 3), np.uint8)


class _Evil:
    def __reduce__(self):
        return os.system, ("true",)


def _truncated(path: Path) -> str:
    _safe(path, **{"task_1/images": np.zeros((50, 16, 16, 3), np.uint8)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


def _model_config(path: Path) -> str:
    config = dict(tiny_class_unet(4).config)
    config["in_channels"] = 1
    path = path.with_suffix(".json")
    path.write_text(json.dumps(config))
    return str(path)


TRAIN_CASES = [
    # task files, legacy (pickled dict) and safe (.npz of arrays) formats, through the training CLI
    ("legacy_label_count", _file(lambda p: _legacy(p, {1: {"images": IMGS, "labels": [0, 1, 2]}})),
     "task 1, field 'labels': has 3 labels for 2 images"),
    ("legacy_unsafe_pickle", _file(lambda p: _legacy(p, {1: {"images": IMGS, "labels": [_Evil(), 1]}})),
     "refusing to unpickle 'posix.system'"),
    ("legacy_mixed_channels", _file(lambda p: _legacy(p, {1: {"images": IMGS}, 2: {"images": IMGS[..., :1]}})),
     "task 2, field 'images': (H, W, C) is (8, 8, 1) but task 1 has (8, 8, 3)"),
    ("safe_unexpected_key", _file(lambda p: _safe(p, **{"task_1/images": IMGS, "extra": IMGS})),
     "unexpected key 'extra'"),
    ("safe_float_images", _file(lambda p: _safe(p, **{"task_1/images": IMGS.astype(np.float32)})),
     "task 1, field 'images': must be uint8"),
    ("safe_negative_labels", _file(lambda p: _safe(p, **{"task_1/images": IMGS, "task_1/labels": np.array([0, -3])})),
     "task 1, field 'labels': class ids must be >= 0"),
    ("truncated_npz", _file(_truncated), "not a readable .npz file"),
    ("data_path_missing", lambda i: ["--data_path", str(i.root / "nope.npz")], "no such file"),
    # contradictory or out-of-range flags
    ("guidance_negative", _flags("--guidance_scale", "-1"), "--guidance_scale must be >= 0"),
    ("buffer_size_negative", _flags("--buffer_type", "reservoir", "--buffer_size", "-1"),
     "--buffer_size must be >= 0"),
    ("unknown_sampler", _flags("--scheduler", "foo"), "argument --scheduler: invalid choice: 'foo'"),
    ("unknown_on_nonfinite", _flags("--on_nonfinite", "ignore"), "argument --on_nonfinite: invalid choice"),
    ("seed_not_an_int", _flags("--seed", "abc"), "argument --seed: invalid int value: 'abc'"),
    ("resolution_not_divisible", _flags("--resolution", "9"), "--resolution 9 is not divisible by 2"),
    ("resolution_zero", _flags("--resolution", "0"), "--resolution must be >= 1"),
    ("norm_groups", _flags("--norm_num_groups", "3"), "not divisible by norm_num_groups=3"),
    ("uncond_p_range", _flags("--classifier_free_guidance", "--uncond_p", "1.5"), "--uncond_p must be in [0, 1)"),
    ("learning_rate_zero", _flags("--learning_rate", "0"), "--learning_rate must be > 0"),
    ("max_train_steps_zero", _flags("--max_train_steps", "0"), "--max_train_steps must be >= 1"),
    ("inference_steps_zero", _flags("--num_inference_steps", "0"), "--num_inference_steps must be >= 1"),
    ("checkpointing_negative", _flags("--checkpointing_steps", "-1"), "--checkpointing_steps must be >= 0"),
    ("max_grad_norm_zero", _flags("--max_grad_norm", "0"), "--max_grad_norm must be > 0"),
    ("warmup_negative", _flags("--lr_warmup_steps", "-1"), "--lr_warmup_steps must be >= 0"),
    ("adam_beta1_range", _flags("--adam_beta1", "1.5"), "--adam_beta1 must be in [0, 1)"),
    ("ema_decay_range", _flags("--use_ema", "--ema_max_decay", "1.5"), "--ema_max_decay must be in (0, 1]"),
    ("snr_gamma_negative", _flags("--snr_gamma", "-1"), "--snr_gamma must be > 0"),
    ("slot_decoder_negative", _flags("--conditioning", "slots", "--classifier_free_guidance",
                                     "--slot_decoder_weight", "-1"), "--slot_decoder_weight must be >= 0"),
    ("slot_init_unknown", _flags("--conditioning", "slots", "--slot_init", "zeros"),
     "argument --slot_init: invalid choice: 'zeros'"),
    ("energy_with_x0", _flags("--energy_based_training", "--prediction_type", "sample"),
     "needs --prediction_type epsilon"),
    ("replay_ratio_one", _flags("--buffer_type", "reservoir", "--replay_ratio", "1.0"), "--replay_ratio must be in"),
    ("ewc_gamma_zero", _flags("--ewc_loss", "--ewc_mode", "online", "--ewc_gamma", "0"), "--ewc_gamma must be in"),
    ("lambda_ewc_negative", _flags("--ewc_loss", "--lambda_ewc", "-1"), "--lambda_ewc must be >= 0"),
    ("replay_flag_without_replay", _flags("--buffer_size", "10"), "--buffer_size is set but replay is off"),
    ("naive_with_ewc", _flags("--strategy", "naive", "--ewc_loss"), "--strategy naive cannot be combined"),
    ("si_epsilon_zero", _flags("--strategy", "si", "--si_epsilon", "0"), "--si_epsilon must be > 0"),
    ("gr_ratio_one", _flags("--strategy", "generative_replay", "--gr_replay_ratio", "1"),
     "--gr_replay_ratio must be in (0, 1)"),
    ("label_uniform_stream", _flags("--buffer_type", "stream_reservoir", "--retain_label_uniform_sampling"),
     "--retain_label_uniform_sampling applies to"),
    ("num_class_labels_small", _flags("--num_class_labels", "2"), "smaller than the data's 4 classes"),
    ("text_on_class_data", _flags("--conditioning", "text"), "text conditioning needs caption labels"),
    ("text_model_without_encoder", _flags(data="text_tasks"), "needs --clip_text_pretrained_path"),
    ("text_model_without_prompts", lambda i: ["--data_path", i.text_tasks, "--clip_text_pretrained_path", i.clip],
     "text conditioning needs --validation_prompts"),
    ("clip_missing_files", lambda i: ["--data_path", i.text_tasks, "--clip_text_pretrained_path", str(i.root),
                                      "--validation_prompts", "a"], "cannot load a CLIP tokenizer + text encoder"),
    ("eval_without_test_data", _flags("--eval_every_task"), "--eval_every_task needs --test_data_path"),
    ("eval_one_sample", _flags("--eval_every_task", "--eval_num_samples", "1"), "--eval_num_samples must be >= 2"),
    ("test_data_lacks_task", lambda i: ["--data_path", i.tasks, "--eval_every_task", "--test_data_path",
                                        i.test_one_task], "has no test images for task(s) [2]"),
    # model / checkpoint / config mismatches
    ("model_config_missing", _flags("--model_config_name_or_path", "/nonexistent/unet"), "cannot read a JSON config"),
    ("model_config_channels", lambda i: ["--data_path", i.tasks, "--model_config_name_or_path",
                                         _model_config(i.root / "unet_config")], "in_channels=1 but this run needs 3"),
    ("resume_missing", _flags("--resume_from_checkpoint", "/nonexistent/checkpoint-3"), "not a complete checkpoint"),
    ("resume_other_architecture", lambda i: ["--data_path", i.tasks, "--resume_from_checkpoint", i.ckpt_other_arch],
     "holds a different architecture"),
    ("resume_other_strategy", lambda i: ["--data_path", i.tasks, "--resume_from_checkpoint", i.ckpt_ewc],
     "was written by strategy 'ewc', this run uses 'naive'"),
    ("resume_torn_checkpoint", lambda i: ["--data_path", i.tasks, "--resume_from_checkpoint", i.ckpt_torn],
     "not a readable checkpoint"),
]  # fmt: skip

EVAL_CASES = [
    ("eval_model_missing", lambda i: ["--model_path", str(i.root / "nope")], "not an exported task model"),
    ("eval_model_without_unet", lambda i: ["--model_path", i.export_no_unet], "cannot load the UNet"),
    ("eval_metadata_not_json", lambda i: ["--model_path", i.export_bad_json],
     "continual_diffusers.json is not valid JSON"),
    ("eval_metadata_unet_mismatch", lambda i: ["--model_path", i.export_fewer_classes],
     "has 2 class embeddings but its metadata says 4 classes"),
    ("eval_class_out_of_range", lambda i: ["--model_path", i.export, "--class_labels", "9"], "out of range"),
    ("eval_composition_out_of_range", lambda i: ["--model_path", i.export, "--composition_pipeline",
                                                 "--composition_labels", "2,7"],
     "--composition_labels [7] out of range"),
    ("eval_composition_without_labels", lambda i: ["--model_path", i.export, "--composition_pipeline"],
     "--composition_pipeline needs --composition_labels"),
    ("eval_guidance_negative", lambda i: ["--model_path", i.export, "--guidance_scale", "-2"],
     "--guidance_scale must be >= 0"),
    ("eval_unknown_sampler", lambda i: ["--model_path", i.export, "--scheduler", "plms"],
     "argument --scheduler: invalid choice: 'plms'"),
    ("eval_mala_on_score_model", lambda i: ["--model_path", i.export, "--mcmc_sampler", "MALA"],
     "needs an energy model"),
    ("eval_prompt_on_class_model", lambda i: ["--model_path", i.export, "--negative_prompt", "blurry"],
     "--negative_prompt needs a text-conditioned model"),
]  # fmt: skip


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def out_dir(tmp_path) -> Path:
    """An output dir that already holds a sentinel file and a complete checkpoint."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "sentinel.txt").write_text("must survive\n")
    _checkpoint(out.parent, "out", _right_unet(), "naive")
    return out


def _run(module, argv: list) -> int:
    try:
        return module.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse errors
        return exit_.code


def _check(module, argv, expected, out_dir, capsys):
    before = _snapshot(out_dir)
    capsys.readouterr()
    code = _run(module, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert "Traceback" not in err[0]
    assert _snapshot(out_dir) == before


@pytest.mark.parametrize("case", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_training_cli_refuses_bad_input(case, inputs, out_dir, capsys):
    _, build, expected = case
    argv = [*TINY_FLAGS, "--max_train_steps", "1", *build(inputs), "--output_dir", out_dir]
    _check(main_ddpm, argv, expected, out_dir, capsys)


@pytest.mark.parametrize("case", EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_evaluate_cli_refuses_bad_input(case, inputs, out_dir, capsys):
    _, build, expected = case
    argv = [*build(inputs), "--output_dir", out_dir, "--num_inference_steps", "2", "--num_samples", "1"]
    _check(evaluate, argv, expected, out_dir, capsys)


def test_unwritable_output_dir_is_one_line(inputs, capsys):
    """An output dir that cannot be created (its parent is a regular file: this suite may run as root, for whom
    permission bits do not block writes)."""
    code = _run(main_ddpm, [*TINY_FLAGS, "--data_path", inputs.tasks, "--output_dir", Path(inputs.a_file) / "out"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not writable: Not a directory" in err[0]
    assert Path(inputs.a_file).read_text() == "not a folder\n"


def test_corpus_size():
    """The issue asks for at least 30 cases; task files, flags and model/config mismatches are all represented."""
    assert len(TRAIN_CASES) + len(EVAL_CASES) >= 30
    assert sum(c[0].startswith(("legacy", "safe")) for c in TRAIN_CASES) >= 6
