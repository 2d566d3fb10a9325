"""Bad-input corpus for the command-line tools (main_ddpm.py, main_ldm.py, evaluate.py): task files in both formats,
contradictory, out-of-range, non-finite or abbreviated flags, hostile model configs, edited checkpoints and exported
models, bad oracles. Every case must end with exit code 2 and exactly one `error: …` line naming the problem (no
traceback), and must leave the output directory exactly as it was (it holds a sentinel file and a complete
checkpoint before the call; their bytes are compared afterwards), also when the refusal comes late (a checkpoint,
an oracle: everything is checked before the first write).

Cases are (id, argv builder, expected message fragment); a builder gets the `Inputs` fixture and returns the argv
without --output_dir. Edited checkpoints and exports are copies of real ones, edited by the case. The task-file
validation itself (malformed files at the loader level) is in tests/test_bad_task_files.py; here a few of them go
through the training CLI.
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
import tiny_sd
import torch
from conftest import TINY_FLAGS, make_tasks, tiny_class_unet
from safetensors.torch import load_file, save_file

import evaluate
import main_ddpm
import main_ldm
from continual_diffusers.data import TaskSequence, save_tasks
from continual_diffusers.data.tasks import FORMAT
from continual_diffusers.training import checkpoint as ckpt

tiny_sd_dir, caption_file = tiny_sd.tiny_sd_dir, tiny_sd.caption_file  # shared session fixtures


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
    ckpt_done: str  # a complete end-of-task-1 checkpoint this run can resume from (naive, no EMA)
    ckpt_mid: str  # a real mid-task checkpoint (EMA, optimizer, LR schedule) of a REAL_RUN run


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
    from continual_diffusers.models.denoiser import ScoreModel
    from continual_diffusers.training.export import write_export

    schedule = DDPMScheduler(num_train_timesteps=10)
    return write_export(str(root / name / "task_2"), ScoreModel(unet), None, schedule, meta)


# A run with EMA and a checkpoint after every step: its checkpoint-1 is mid task 1 (optimizer and LR schedule saved).
REAL_RUN = ["--use_ema", "--max_train_steps", "2", "--checkpointing_steps", "1"]


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
    real = root / "real_run"
    assert main_ddpm.main([*TINY_FLAGS, "--data_path", tasks, *REAL_RUN, "--output_dir", str(real)]) == 0
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
        ckpt_done=_checkpoint(root, "done", right, "naive"),
        ckpt_mid=str(real / "checkpoint-1"),
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
    ("data_path_missing", lambda i: ["--data_path", str(i.root / "nope.npz")], "no such task file or task folder"),
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
    ("zero_snr_with_epsilon", _flags("--rescale_betas_zero_snr", "--prediction_type", "epsilon"),
     "ε-prediction cannot recover x₀"),
    ("zero_snr_with_energy", _flags("--rescale_betas_zero_snr", "--energy_based_training"),
     "ε-prediction cannot recover x₀"),
    ("timestep_sampling_unknown", _flags("--timestep_sampling", "cosine"),
     "argument --timestep_sampling: invalid choice: 'cosine'"),
    ("ddim_eta_with_ddpm", _flags("--scheduler", "ddpm", "--ddim_eta", "0.5"),
     "--ddim_eta 0.5 applies to --scheduler ddim, not ddpm"),
    ("ddim_eta_above_one", _flags("--scheduler", "ddim", "--ddim_eta", "2"), "--ddim_eta must be in [0, 1]"),
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
                                      "--validation_prompts", "a"], "cannot load the text encoder (no config.json)"),
    ("eval_without_test_data", _flags("--eval_every_task"), "--eval_every_task needs --test_data_path"),
    ("eval_one_sample", _flags("--eval_every_task", "--eval_num_samples", "1"), "--eval_num_samples must be >= 2"),
    ("test_data_lacks_task", lambda i: ["--data_path", i.tasks, "--eval_every_task", "--test_data_path",
                                        i.test_one_task], "has no test images for task(s) [2]"),
    # model / checkpoint / config mismatches
    ("model_config_missing", _flags("--model_config_name_or_path", "/nonexistent/unet"),
     "cannot read the file (No such file"),
    ("model_config_channels", lambda i: ["--data_path", i.tasks, "--model_config_name_or_path",
                                         _model_config(i.root / "unet_config")],
     "in_channels=1 but this model needs 3"),
    ("resume_missing", _flags("--resume_from_checkpoint", "/nonexistent/checkpoint-3"), "not a complete checkpoint"),
    ("resume_other_architecture", lambda i: ["--data_path", i.tasks, "--resume_from_checkpoint", i.ckpt_other_arch],
     "holds a different architecture"),
    ("resume_other_strategy", lambda i: ["--data_path", i.tasks, "--resume_from_checkpoint", i.ckpt_ewc],
     "was written by strategy 'ewc', this run uses 'naive'"),
    ("resume_torn_checkpoint", lambda i: ["--data_path", i.tasks, "--resume_from_checkpoint", i.ckpt_torn],
     "not a readable checkpoint"),
]  # fmt: skip

# ------------------------------------------------------------------------------------ numbers users type -----------
FLAG_CASES = [
    ("seed_negative", _flags("--seed", "-1"), "--seed must be >= 0 and <= 4294967295, got -1"),
    ("block_out_channels_zero", _flags("--block_out_channels", "0", "0"), "--block_out_channels must be >= 1"),
    ("block_out_channels_huge", _flags("--block_out_channels", "8", "100000"),
     "--block_out_channels must be >= 1 and <= 4096, got 100000"),
    ("layers_per_block_negative", _flags("--layers_per_block", "-1"), "--layers_per_block must be >= 1 and <= 16"),
    ("norm_groups_negative", _flags("--norm_num_groups", "-4"), "--norm_num_groups must be >= 1"),
    ("inference_steps_above_schedule", _flags("--num_inference_steps", "5000"),
     "--num_inference_steps 5000 exceeds the 10 training timesteps of --ddpm_num_steps"),
    ("resolution_huge", _flags("--resolution", "65536"), "--resolution must be >= 1 and <= 4096, got 65536"),
    ("ddpm_num_steps_huge", _flags("--ddpm_num_steps", "10000000000"), "--ddpm_num_steps must be >= 1 and <= 100000"),
    ("ddpm_num_steps_float", _flags("--ddpm_num_steps", "1e10"),
     "argument --ddpm_num_steps: invalid int value: '1e10'"),
    ("num_class_labels_huge", _flags("--num_class_labels", "100000000000"),
     "--num_class_labels must be >= 1 and <= 100000"),
    ("num_samples_huge", _flags("--num_samples", "1000000000000"), "--num_samples must be >= 1 and <= 10000"),
    ("train_batch_size_huge", _flags("--train_batch_size", "10000000"),
     "--train_batch_size must be >= 1 and <= 65536"),
    ("grad_accumulation_zero", _flags("--gradient_accumulation_steps", "0"),
     "--gradient_accumulation_steps must be >= 1"),
    ("eval_num_samples_huge", _flags("--eval_num_samples", "10000000"),
     "--eval_num_samples must be >= 2 and <= 100000"),
    ("checkpoints_total_limit_zero", _flags("--checkpoints_total_limit", "0"),
     "--checkpoints_total_limit must be >= 1"),
    ("learning_rate_nan", _flags("--learning_rate", "nan"), "--learning_rate must be > 0 and finite, got nan"),
    ("adam_weight_decay_nan", _flags("--adam_weight_decay", "nan"), "--adam_weight_decay must be >= 0 and finite"),
    ("adam_epsilon_inf", _flags("--adam_epsilon", "inf"), "--adam_epsilon must be > 0 and finite, got inf"),
    ("adam_beta2_nan", _flags("--adam_beta2", "nan"), "--adam_beta2 must be in [0, 1), got nan"),
    ("max_grad_norm_inf", _flags("--max_grad_norm", "inf"), "--max_grad_norm must be > 0 and finite, got inf"),
    ("noise_offset_inf", _flags("--noise_offset", "inf"), "--noise_offset must be >= 0 and finite, got inf"),
    ("snr_gamma_nan", _flags("--snr_gamma", "nan"), "--snr_gamma must be > 0 and finite, got nan"),
    ("ema_power_nan", _flags("--use_ema", "--ema_power", "nan"), "--ema_power must be > 0 and finite, got nan"),
    ("ema_scope_no_ema", _flags("--ema_scope", "task"), "--ema_scope task sets how the EMA spans tasks, so it needs"),
    ("ema_inv_gamma_zero", _flags("--use_ema", "--ema_inv_gamma", "0"), "--ema_inv_gamma must be > 0 and finite"),
    ("guidance_nan", _flags("--guidance_scale", "nan"), "--guidance_scale must be >= 0 and finite, got nan"),
    ("uncond_p_nan", _flags("--classifier_free_guidance", "--uncond_p", "nan"),
     "--uncond_p must be in [0, 1), got nan"),
    ("lambda_ewc_nan", _flags("--ewc_loss", "--lambda_ewc", "nan"), "--lambda_ewc must be >= 0 and finite, got nan"),
    ("replay_weight_inf", _flags("--buffer_type", "reservoir", "--replay_loss_weight", "inf"),
     "--replay_loss_weight must be >= 0 and finite, got inf"),
    ("si_lambda_inf", _flags("--strategy", "si", "--si_lambda", "inf"), "--si_lambda must be >= 0 and finite"),
    ("gr_steps_above_schedule", _flags("--strategy", "generative_replay", "--gr_num_inference_steps", "50"),
     "--gr_num_inference_steps 50 exceeds the schedule's 10 training timesteps"),
    ("slot_dim_huge", _flags("--conditioning", "slots", "--classifier_free_guidance", "--slot_dim", "100000"),
     "--slot_dim must be >= 1 and <= 4096"),
    ("num_slots_zero", _flags("--conditioning", "slots", "--classifier_free_guidance", "--num_slots", "0"),
     "--num_slots must be >= 1 and <= 64"),
    ("conditioning_none_with_classes", _flags("--conditioning", "none", "--num_class_labels", "4"),
     "--num_class_labels sets the classes of a class-conditional model, not of --conditioning none"),
    ("resume_empty", _flags("--resume_from_checkpoint", ""), "--resume_from_checkpoint is empty"),
    ("abbreviated_flag", _flags("--buffer_typ", "reservoir"), "unrecognized arguments: --buffer_typ reservoir"),
]  # fmt: skip


def _text(i: Inputs, text: str) -> str:
    path = i.root / f"text_{abs(hash(text))}.json"
    path.write_text(text)
    return str(path)


def _unet_config(**changes):
    """--model_config_name_or_path: the right UNet's config (4 classes, 8×8 RGB) with `changes`."""

    def argv(i: Inputs) -> list:
        config = {k: v for k, v in dict(_right_unet().config).items() if not k.startswith("_")}
        config.update(changes)
        path = i.root / f"unet_{abs(hash(argv))}.json"
        path.write_text(json.dumps(config))
        return ["--data_path", i.tasks, "--model_config_name_or_path", str(path)]

    return argv


MODEL_CONFIG_CASES = [
    ("config_not_an_object", lambda i: ["--data_path", i.tasks, "--model_config_name_or_path", _text(i, "[1, 2]")],
     "holds a JSON list, not a config object"),
    ("config_huge_channels", _unet_config(block_out_channels=[100000, 100000]),
     "block_out_channels must be >= 1 and <= 4096, got 100000"),
    ("config_wrong_type", _unet_config(layers_per_block="two"), "layers_per_block must be >= 1 and <= 16, got 'two'"),
    ("config_unknown_block", _unet_config(down_block_types=["FooBlock2D", "DownBlock2D"]),
     "not a valid UNet2DModel config"),
    ("config_huge_class_embeds", _unet_config(num_class_embeds=10**11), "num_class_embeds must be >= 1 and <= 100001"),
    ("config_too_many_parameters", _unet_config(block_out_channels=[4096, 4096], layers_per_block=16),
     "parameters, more than the 5,000,000,000 allowed"),
    ("config_out_channels", _unet_config(out_channels=1), "out_channels=1 but this model needs 3"),
    ("config_class_embeds_mismatch", _unet_config(num_class_embeds=7), "num_class_embeds=7"),
    ("config_other_class", _unet_config(_class_name="UNet2DConditionModel"),
     "describes a UNet2DConditionModel, this model needs a UNet2DModel"),
]  # fmt: skip


# ------------------------------------------------------------------------- edited checkpoints (resume is refused)
def _copy(i: Inputs, source: str, edit) -> Path:
    """A fresh copy of `source` (a checkpoint or export folder), edited by `edit(folder)`."""
    folder = i.root / "edited" / f"{Path(source).name}_{abs(hash(edit))}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(source, folder)
    edit(folder)
    return folder


def _json(name: str, **changes):
    def edit(folder: Path) -> None:
        data = json.loads((folder / name).read_text())
        data.update(changes)
        (folder / name).write_text(json.dumps(data))

    return edit


def _write(name: str, text: str):
    return lambda folder: (folder / name).write_text(text)


def _pt(name: str, change):
    """Edit a .pt file: `change(obj)` mutates what torch.load returns."""

    def edit(folder: Path) -> None:
        obj = torch.load(folder / name, weights_only=True)
        change(obj)
        torch.save(obj, folder / name)

    return edit


def _weights(name: str, change):
    """Edit a safetensors file: `change(tensors)` mutates the dict of tensors."""

    def edit(folder: Path) -> None:
        tensors = dict(load_file(folder / name))
        change(tensors)
        save_file(tensors, folder / name)

    return edit


def _nan_first(tensors: dict) -> None:
    key = sorted(tensors)[0]
    tensors[key] = torch.full_like(tensors[key], float("nan"))


def _resume(edit, base: str = "ckpt_done", *flags):
    """Resume from an edited copy of checkpoint `base` (ckpt_mid: with the REAL_RUN flags)."""
    run_flags = REAL_RUN if base == "ckpt_mid" else []

    def argv(i: Inputs) -> list:
        folder = _copy(i, getattr(i, base), edit)
        return ["--data_path", i.tasks, *run_flags, *flags, "--resume_from_checkpoint", str(folder)]

    return argv


def _evil_pt(folder: Path) -> None:
    with open(folder / "ema.pt", "wb") as fh:
        pickle.dump({"shadow_params": _Evil()}, fh)


def _strategy_state(strategy: str, tensors: dict, extra: dict):
    def edit(folder: Path) -> None:
        save_file(tensors, folder / "strategy.safetensors")
        (folder / "strategy.json").write_text(json.dumps(extra))
        _json(ckpt.STATE_FILE, strategy=strategy)(folder)

    return edit


def _first_param(i_state: dict):
    return lambda obj: obj["state"][0].update(i_state)


CHECKPOINT_CASES = [
    ("ckpt_task_index_99", _resume(_json(ckpt.STATE_FILE, task_index=99)),
     "task_index is 99 but the task file has 2 tasks"),
    ("ckpt_task_index_string", _resume(_json(ckpt.STATE_FILE, task_index="1")),
     "task_index must be an integer >= 0, got '1'"),
    ("ckpt_seen_tasks", _resume(_json(ckpt.STATE_FILE, seen_tasks=[2])), "seen_tasks [2] do not match task_index 1"),
    ("ckpt_step_past_task", _resume(_json(ckpt.STATE_FILE, step_in_task=50)),
     "step_in_task is 50 but task 2 has 1 optimizer steps"),
    ("ckpt_state_not_object", _resume(_write(ckpt.STATE_FILE, "[1, 2]")), "holds a JSON list, not an object"),
    ("ckpt_evaluation_history", _resume(_json(ckpt.STATE_FILE, evaluation={"after_task": 1})),
     "evaluation must be a list"),
    ("ckpt_nan_weights", _resume(_weights(ckpt.MODEL_FILE, _nan_first)), "holds NaN or infinite values"),
    ("ckpt_half_weights", _resume(_weights(ckpt.MODEL_FILE, lambda t: t.update(
        {k: v.half() for k, v in t.items()}))), "is torch.float16, this model has torch.float32"),
    ("ckpt_missing_weight", _resume(_weights(ckpt.MODEL_FILE, lambda t: t.pop(sorted(t)[0]))),
     "1 weights missing"),
    ("ckpt_pickled_pt", _resume(_evil_pt), "ema.pt holds pickled objects, not just tensors and numbers"),
    ("ckpt_ema_without_flag", _resume(lambda f: torch.save({"shadow_params": []}, f / "ema.pt")),
     "the checkpoint holds EMA weights but this run has no --use_ema"),
    ("ckpt_strategy_json_list", _resume(_write("strategy.json", "[]")), "strategy.json is not a JSON object"),
    ("ckpt_naive_with_state", _resume(_write("strategy.json", '{"x": 1}')), "has no state but the checkpoint holds"),
    ("ckpt_ewc_fisher_shape", _resume(_strategy_state("ewc", {f"{k}.1.conv_in.weight": torch.zeros(3) for k in (
        "fisher", "anchor")}, {"mode": "separate", "slots": ["1"]}), "ckpt_done", "--ewc_loss"),
     "1.conv_in.weight has shape [3] but the parameter conv_in.weight has [8, 3, 3, 3]"),
    ("ckpt_replay_buffer_channels", _resume(_strategy_state(
        "replay", {"buffer.images": torch.zeros(2, 1, 8, 8, dtype=torch.uint8),
         "buffer.task_ids": torch.ones(2).long(),
                   "buffer.labels": torch.tensor([0, 1])}, {"buffer.num_seen": 2}), "ckpt_done", "--buffer_type",
        "reservoir"), "buffer.images must be uint8 (N, 3, H, W)"),
    # a real mid-task checkpoint (EMA, optimizer, LR schedule)
    ("ckpt_ema_nan", _resume(_pt("ema.pt", lambda e: e["shadow_params"][0].fill_(float("nan"))), "ckpt_mid"),
     "state['shadow_params'][0] holds NaN or infinite values"),
    ("ckpt_ema_shapes", _resume(_pt("ema.pt", lambda e: e["shadow_params"].__setitem__(0, torch.zeros(2))),
                                "ckpt_mid"), "state['shadow_params'][0] must be a torch.float32 tensor of shape"),
    ("ckpt_ema_decay", _resume(_pt("ema.pt", lambda e: e.update(decay=5.0)), "ckpt_mid"),
     "ema.pt: decay must be in [0, 1], got 5"),
    ("ckpt_ema_missing", _resume(lambda f: os.remove(f / "ema.pt"), "ckpt_mid"),
     "the checkpoint has no EMA weights but this run uses --use_ema"),
    ("ckpt_optimizer_shape", _resume(_pt("optimizer.pt", _first_param({"exp_avg": torch.zeros(3)})), "ckpt_mid"),
     "state[0]['exp_avg'] has shape [3], the parameter [8, 3, 3, 3]"),
    ("ckpt_optimizer_nan", _resume(_pt("optimizer.pt", lambda o: o["state"][0]["exp_avg_sq"].fill_(float("inf"))),
                                   "ckpt_mid"), "state[0]['exp_avg_sq'] holds NaN or infinite values"),
    ("ckpt_optimizer_lr_type", _resume(_pt("optimizer.pt", lambda o: o["param_groups"][0].update(lr="fast")),
                                       "ckpt_mid"), "param_groups[0]['lr'] must be a number, got 'fast'"),
    ("ckpt_optimizer_unknown_param", _resume(_pt("optimizer.pt", lambda o: o["state"].update({999: {}})), "ckpt_mid"),
     "state[999] names no parameter of this model"),
    ("ckpt_lr_schedule_key", _resume(_pt("lr_scheduler.pt", lambda s: s.update(optimizer=1)), "ckpt_mid"),
     "unexpected ['optimizer']"),
    ("ckpt_lr_schedule_epoch", _resume(_pt("lr_scheduler.pt", lambda s: s.update(last_epoch=10**6)), "ckpt_mid"),
     "last_epoch is 1000000 but the task has 2 optimizer steps"),
]  # fmt: skip


# -------------------------------------------------------------------------------- oracles (refused before writes)
def _oracle(i: Inputs, name: str, channels: int = 3, nan: bool = False, **config) -> str:
    from continual_diffusers.evaluation.classifier import OracleCNN, save_oracle

    model = OracleCNN(channels, 4, width=8, feature_dim=16)
    if nan:
        torch.nn.init.constant_(model.head.bias, float("nan"))
    path = save_oracle(model, str(i.root / "oracles" / name), 8, 0.5)
    if config:
        _json("config.json", **config)(Path(path))
    return path


def _with_oracle(make):
    return lambda i: ["--data_path", i.tasks, "--eval_every_task", "--test_data_path", i.tasks, "--oracle_path",
                      make(i)]  # fmt: skip


ORACLE_CASES = [
    ("oracle_missing", _with_oracle(lambda i: str(i.root / "no_oracle")), "not an oracle folder (no config.json)"),
    ("oracle_width_type", _with_oracle(lambda i: _oracle(i, "type", width="wide")),
     "config.json: width must be >= 1 and <= 4096, got 'wide'"),
    ("oracle_width_huge", _with_oracle(lambda i: _oracle(i, "huge", width=10**6)),
     "config.json: width must be >= 1 and <= 4096, got 1000000"),
    ("oracle_channels", _with_oracle(lambda i: _oracle(i, "gray", channels=1)),
     "the oracle takes 1-channel images of 4 classes, the test tasks have 3 channel(s)"),
    ("oracle_nan", _with_oracle(lambda i: _oracle(i, "nan", nan=True)), "the oracle's weights hold NaN"),
    ("oracle_weights_mismatch", _with_oracle(lambda i: _oracle(i, "mismatch", feature_dim=32)),
     "the config and the weights do not belong together"),
]  # fmt: skip


EVAL_CASES = [
    ("eval_model_missing", lambda i: ["--model_path", str(i.root / "nope")], "not an exported task model"),
    ("eval_model_without_unet", lambda i: ["--model_path", i.export_no_unet], "cannot load the UNet"),
    ("eval_metadata_not_json", lambda i: ["--model_path", i.export_bad_json],
     "continual_diffusers.json: not valid JSON"),
    ("eval_metadata_unet_mismatch", lambda i: ["--model_path", i.export_fewer_classes],
     "the UNet has num_class_embeds=2 but 4 classes + the CFG null class need num_class_embeds=5"),
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


# ------------------------------------------------------------------------------------------- evaluate.py flags
def _eval(*flags):
    return lambda i: ["--model_path", i.export, *flags]


EVAL_FLAG_CASES = [
    ("eval_guidance_nan", _eval("--guidance_scale", "nan"), "--guidance_scale must be >= 0 and finite, got nan"),
    ("eval_step_size_nan", _eval("--mcmc_sampler", "ULA", "--step_sizes_multiplier", "nan"),
     "--step_sizes_multiplier must be > 0 and finite, got nan"),
    ("eval_damping_nan", _eval("--mcmc_sampler", "UHA", "--damping_coeff", "nan"),
     "--damping_coeff must be in [0, 1]"),
    ("eval_mcmc_window_inverted", _eval("--mcmc_sampler", "ULA", "--mcmc_sampler_start_timestep", "5",
                                        "--mcmc_sampler_max_timestep", "2"), "MCMC would never run"),
    ("eval_inference_steps_above_schedule", _eval("--num_inference_steps", "5000"),
     "--num_inference_steps 5000 exceeds the 10 training timesteps of"),
    ("eval_num_samples_huge", _eval("--num_samples", "1000000000000"), "--num_samples must be >= 1 and <= 10000"),
    ("eval_seed_negative", _eval("--seed", "-1"), "--seed must be >= 0"),
    ("eval_ddim_eta_with_unipc", _eval("--scheduler", "unipc", "--ddim_eta", "1"), "applies to --scheduler ddim"),
    ("eval_class_labels_negative", _eval("--class_labels", "-1"), "--class_labels must be >= 0"),
    ("eval_batch_size_zero", _eval("--sampling_batch_size", "0"), "--sampling_batch_size must be >= 1"),
    ("eval_composition_weight_nan", _eval("--composition_pipeline", "--composition_labels", "0,1",
                                          "--composition_weights=nan,1"), "--composition_weights must be finite"),
    ("eval_abbreviated_flag", _eval("--num_sample", "3"), "unrecognized arguments: --num_sample 3"),
    ("eval_output_is_a_file", lambda i: ["--model_path", i.export, "--output_dir", i.a_file],
     "is a file, not a folder"),
    ("eval_output_not_creatable", lambda i: ["--model_path", i.export, "--output_dir", f"{i.a_file}/out"],
     "is not writable: Not a directory"),
]  # fmt: skip


# ----------------------------------------------------------------------------------------- edited exports
def _model(edit, *flags):
    return lambda i: ["--model_path", str(_copy(i, i.export, edit)), *flags]


def _unet_json(**changes):
    return _json("unet/config.json", **changes)


EXPORT_CASES = [
    ("export_no_scheduler", _model(lambda f: shutil.rmtree(f / "scheduler")),
     "no scheduler/scheduler_config.json (an incomplete export)"),
    ("export_schedule_huge", _model(_json("scheduler/scheduler_config.json", num_train_timesteps=10**10)),
     "num_train_timesteps must be >= 1 and <= 100000"),
    ("export_schedule_wrong_type", _model(_json("scheduler/scheduler_config.json", beta_start="small")),
     "beta_start must be in (0, 1), got 'small'"),
    ("export_schedule_unknown", _model(_json("scheduler/scheduler_config.json", beta_schedule="foo")),
     "beta_schedule must be one of ['linear', 'scaled_linear', 'squaredcos_cap_v2'], got 'foo'"),
    ("export_schedule_prediction", _model(_json("scheduler/scheduler_config.json", prediction_type="v_prediction")),
     "prediction_type 'v_prediction' but the metadata says 'epsilon'"),
    ("export_schedule_zero_snr_epsilon", _model(_json("scheduler/scheduler_config.json", rescale_betas_zero_snr=True)),
     "a zero-terminal-SNR schedule (β_T = 1) with ε-prediction cannot be sampled"),
    ("export_unet_huge", _model(_unet_json(block_out_channels=[100000, 100000])),
     "block_out_channels must be >= 1 and <= 4096"),
    ("export_unet_wrong_type", _model(_unet_json(layers_per_block="one")), "layers_per_block must be >= 1"),
    ("export_unet_unknown_block", _model(_unet_json(up_block_types=["UpBlock2D", "NopeBlock"])),
     "not a valid UNet2DModel config"),
    ("export_unet_sample_size", _model(_unet_json(sample_size=16)), "sample_size=16 but this model needs 8"),
    ("export_unet_nan", _model(_weights("unet/diffusion_pytorch_model.safetensors", _nan_first)),
     "holds NaN or infinite values"),
    ("export_unet_shapes", _model(_weights("unet/diffusion_pytorch_model.safetensors",
                                           lambda t: t.update({"conv_in.weight": torch.zeros(1)}))),
     "weight conv_in.weight has shape [1] but the config describes [8, 3, 3, 3]"),
    ("export_meta_not_object", _model(_write("continual_diffusers.json", "[]")), "holds a JSON list, not an object"),
    ("export_meta_huge_classes", _model(_json("continual_diffusers.json", num_classes=10**11)),
     "num_classes must be >= 1 and <= 100000"),
    ("export_meta_resolution_type", _model(_json("continual_diffusers.json", resolution="8")),
     "resolution must be >= 1 and <= 4096, got '8'"),
    ("export_meta_conditioning", _model(_json("continual_diffusers.json", conditioning="audio")),
     "conditioning must be one of"),
    ("export_meta_seen_tasks", _model(_json("continual_diffusers.json", seen_tasks=[7])),
     "seen_tasks must list task ids of classes_per_task"),
    ("export_meta_classes", _model(_json("continual_diffusers.json", classes_per_task={"1": [0, 99], "2": [2]})),
     "classes_per_task must map task ids to lists of class ids in [0, 4)"),
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


ALL_TRAIN = TRAIN_CASES + FLAG_CASES + MODEL_CONFIG_CASES + CHECKPOINT_CASES + ORACLE_CASES
ALL_EVAL = EVAL_CASES + EVAL_FLAG_CASES + EXPORT_CASES


@pytest.mark.parametrize("case", ALL_TRAIN, ids=[c[0] for c in ALL_TRAIN])
def test_training_cli_refuses_bad_input(case, inputs, out_dir, capsys):
    _, build, expected = case
    argv = [*TINY_FLAGS, "--max_train_steps", "1", "--output_dir", out_dir, *build(inputs)]
    _check(main_ddpm, argv, expected, out_dir, capsys)


@pytest.mark.parametrize("case", ALL_EVAL, ids=[c[0] for c in ALL_EVAL])
def test_evaluate_cli_refuses_bad_input(case, inputs, out_dir, capsys):
    _, build, expected = case
    argv = ["--output_dir", out_dir, "--num_inference_steps", "2", "--num_samples", "1", *build(inputs)]
    _check(evaluate, argv, expected, out_dir, capsys)


LDM_FLAGS = ["--train_batch_size", "4", "--num_inference_steps", "2", "--num_samples", "1", "--logger", "none",
             "--max_train_steps", "1", "--validation_prompts", "digit 0"]  # fmt: skip
LDM_CASES = [
    ("ldm_lora_rank_negative", ["--lora_rank", "-1"], "--lora_rank must be >= 0 and <= 1024"),
    ("ldm_lora_alpha_nan", ["--lora_rank", "4", "--lora_alpha", "nan"], "--lora_alpha must be > 0 and finite"),
    ("ldm_uncond_p_inf", ["--uncond_p", "inf"], "--uncond_p must be in [0, 1), got inf"),
    ("ldm_inference_steps_above_schedule", ["--num_inference_steps", "5000"],
     "--num_inference_steps 5000 exceeds the 10 training timesteps of"),
    ("ldm_scratch_config_huge", ["--unet_scratch", "--model_config_name_or_path", "HUGE_CONFIG"],
     "block_out_channels must be >= 1 and <= 4096, got 100000"),
]  # fmt: skip


@pytest.mark.parametrize("case", LDM_CASES, ids=[c[0] for c in LDM_CASES])
def test_ldm_cli_refuses_bad_input(case, tiny_sd_dir, caption_file, out_dir, capsys):
    _, flags, expected = case
    if "HUGE_CONFIG" in flags:
        config = json.loads((Path(tiny_sd_dir) / "unet" / "config.json").read_text())
        huge = out_dir.parent / "huge_unet.json"
        huge.write_text(json.dumps(dict(config, block_out_channels=[100000] * len(config["block_out_channels"]))))
        flags = [str(huge) if f == "HUGE_CONFIG" else f for f in flags]
    argv = ["--pretrained_model_name_or_path", tiny_sd_dir, "--data_path", caption_file, "--output_dir", out_dir,
            *LDM_FLAGS, *flags]  # fmt: skip
    _check(main_ldm, argv, expected, out_dir, capsys)


LATE = {c[0]: c for c in ALL_TRAIN if c[0] in ("ckpt_task_index_99", "ckpt_optimizer_shape", "oracle_channels")}


@pytest.mark.parametrize("name", sorted(LATE))
def test_late_refusal_creates_no_output_dir(name, inputs, tmp_path, capsys):
    """A refusal that comes after the flags and the data were accepted (a checkpoint, an oracle) still happens
    before the output dir is created."""
    out = tmp_path / "new_out"
    code = _run(main_ddpm, [*TINY_FLAGS, "--max_train_steps", "1", "--output_dir", out, *LATE[name][1](inputs)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and LATE[name][2] in err[0], err
    assert not out.exists()


def test_the_edited_checkpoints_resume_unedited(inputs, tmp_path):
    """Control for the checkpoint cases: the untouched copies they start from do resume (so each case is refused
    for its edit), and the untouched export samples."""
    for base, flags in ((inputs.ckpt_done, []), (inputs.ckpt_mid, REAL_RUN)):
        # The copy inside the new run's folder: a checkpoint of another run would need that run's finished exports.
        out = tmp_path / Path(base).parent.name
        folder = out / Path(base).name
        shutil.copytree(_copy(inputs, base, lambda f: None), folder)
        argv = [*TINY_FLAGS, "--data_path", inputs.tasks, *flags, "--max_train_steps", "2", "--resume_from_checkpoint",
                folder, "--output_dir", out]  # fmt: skip
        assert _run(main_ddpm, argv) == 0
    argv = ["--model_path", inputs.export, "--output_dir", tmp_path / "eval", "--num_inference_steps", "2",
            "--num_samples", "1"]  # fmt: skip
    assert _run(evaluate, argv) == 0


def test_unwritable_output_dir_is_one_line(inputs, capsys):
    """An output dir that cannot be created (its parent is a regular file: this suite may run as root, for whom
    permission bits do not block writes)."""
    code = _run(main_ddpm, [*TINY_FLAGS, "--data_path", inputs.tasks, "--output_dir", Path(inputs.a_file) / "out"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not writable: Not a directory" in err[0]
    assert Path(inputs.a_file).read_text() == "not a folder\n"


def test_corpus_size():
    """The corpus keeps at least 150 cases (the first one had 60), with at least 10 checkpoint or export
    edits; task files, flags, model configs, checkpoints, exports and oracles are all represented."""
    assert len(ALL_TRAIN) + len(ALL_EVAL) + len(LDM_CASES) >= 150
    assert sum(c[0].startswith(("legacy", "safe")) for c in TRAIN_CASES) >= 6
    assert len(FLAG_CASES) + len(EVAL_FLAG_CASES) + len(LDM_CASES) >= 40
    assert len(CHECKPOINT_CASES) + len(EXPORT_CASES) >= 30
    assert len(MODEL_CONFIG_CASES) >= 8 and len(ORACLE_CASES) >= 5
