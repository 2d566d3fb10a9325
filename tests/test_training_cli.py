"""main_ddpm end to end on tiny models: every objective × conditioning × CFG trains 2 tasks, exports reload,
resume is exact, bad flags exit 2 with one line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import TINY_FLAGS
from diffusers import UNet2DConditionModel, UNet2DModel
from safetensors.torch import load_file

import main_ddpm

OBJECTIVES = {
    "score": [],
    "energy-dae": ["--energy_based_training", "--energy_score_type", "dae"],
    "energy-l2": ["--energy_based_training", "--energy_score_type", "l2"],
}


def run(argv) -> int:
    return main_ddpm.main([str(a) for a in argv])


@pytest.mark.parametrize("cfg", [False, True], ids=["nocfg", "cfg"])
@pytest.mark.parametrize("kind", ["none", "class", "text"])
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_two_tasks_train_and_export(tmp_path, task_file, tiny_clip_dir, objective, kind, cfg):
    out = tmp_path / "run"
    argv = [
        "--data_path",
        task_file("text" if kind == "text" else "class"),
        "--output_dir",
        out,
        "--max_train_steps",
        2,
        "--checkpointing_steps",
        0,
        *TINY_FLAGS,
        *OBJECTIVES[objective],
        "--conditioning",
        kind,
    ]
    if kind == "text":
        argv += ["--clip_text_pretrained_path", tiny_clip_dir, "--validation_prompts", "digit 0", "digit 3"]
    if cfg:
        argv += ["--classifier_free_guidance", "--uncond_p", 0.5]
    assert run(argv) == 0
    for k in (1, 2):
        task_dir = out / f"task_{k}"
        assert (task_dir / "unet" / "diffusion_pytorch_model.safetensors").is_file()
        assert (task_dir / "scheduler" / "scheduler_config.json").is_file()
        assert (task_dir / "samples.png").is_file()
        meta = json.loads((task_dir / "continual_diffusers.json").read_text())
        assert meta["conditioning"] == kind and meta["seen_tasks"] == list(range(1, k + 1))
    if kind == "text":
        assert (out / "task_2" / "text_encoder").is_dir() and (out / "task_2" / "tokenizer").is_dir()
    assert (out / "config.json").is_file()


def test_export_reloads_with_identical_outputs(tmp_path, task_file):
    out = tmp_path / "run"
    assert (
        run(
            [
                "--data_path",
                task_file(),
                "--output_dir",
                out,
                "--max_train_steps",
                3,
                *TINY_FLAGS,
                "--use_ema",
                "--classifier_free_guidance",
            ]
        )
        == 0
    )
    # With --use_ema, unet/ holds the EMA weights (diffusers' layout) and unet_training/ the training weights.
    reloaded = UNet2DModel.from_pretrained(out / "task_2" / "unet_training").eval()
    reference = UNet2DModel.from_config(UNet2DModel.load_config(out / "task_2" / "unet_training")).eval()
    reference.load_state_dict(load_file(out / "checkpoint-6" / "model.safetensors"))
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([1, 7]), torch.tensor([4, 1])
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(x, t, class_labels=y).sample, reference(x, t, class_labels=y).sample, rtol=0, atol=0
        )
    assert reloaded.config.num_class_embeds == 4 + 1  # 4 classes + the CFG null class
    ema = UNet2DModel.from_pretrained(out / "task_2" / "unet")
    assert not torch.equal(ema.conv_in.weight, reloaded.conv_in.weight)


@pytest.mark.parametrize("energy", [False, True], ids=["score", "energy"])
def test_resume_mid_task_gives_identical_weights(tmp_path, task_file, energy):
    data = task_file()
    common = [
        "--data_path",
        data,
        "--max_train_steps",
        4,
        "--checkpointing_steps",
        3,
        "--use_ema",
        "--gradient_accumulation_steps",
        2,
        "--classifier_free_guidance",
        "--random_flip",
        *TINY_FLAGS,
    ]
    if energy:
        common += ["--energy_based_training"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run([*common, "--output_dir", straight]) == 0
    # Simulate a stop after global step 6 (mid task 2): keep only what existed then, and resume from it.
    assert run([*common, "--output_dir", resumed]) == 0
    for name in ("checkpoint-8", "task_2"):
        import shutil

        shutil.rmtree(resumed / name)
    assert sorted(p.name for p in resumed.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4", "checkpoint-6"]
    assert run([*common, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]) == 0
    a, b = (
        load_file(straight / "checkpoint-8" / "model.safetensors"),
        load_file(resumed / "checkpoint-8" / "model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ema_a = torch.load(straight / "checkpoint-8" / "ema.pt", weights_only=True)["shadow_params"]
    ema_b = torch.load(resumed / "checkpoint-8" / "ema.pt", weights_only=True)["shadow_params"]
    assert all(torch.equal(x, y) for x, y in zip(ema_a, ema_b))


def test_help_and_dry_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main_ddpm.main(["--help"])
    assert exc.value.code == 0 and "--energy_based_training" in capsys.readouterr().out
    assert run(["--dry_run", "--output_dir", tmp_path / "dry"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["model"]["conditioning"] == "class" and resolved["model"]["num_classes"] == 10
    assert not (tmp_path / "dry").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--guidance_scale", "-1"], "--guidance_scale must be >= 0"),
        (["--uncond_p", "1.5"], "--uncond_p must be in [0, 1)"),
        (["--resolution", "9"], "not divisible by 2"),
        (["--energy_based_training", "--prediction_type", "sample"], "needs --prediction_type epsilon"),
        (["--conditioning", "text"], "text conditioning needs caption labels"),
        (["--num_class_labels", "2"], "smaller than the data's 4 classes"),
        (["--data_path", "/nonexistent/tasks.npz"], "no such task file or task folder"),
        (["--resume_from_checkpoint", "/nonexistent/checkpoint-3"], "not a complete checkpoint"),
        (["--train_batch_size", "0"], "--train_batch_size must be >= 1"),
    ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path, task_file, capsys, flags, message):
    argv = ["--output_dir", tmp_path / "out", *TINY_FLAGS, *flags]
    if "--data_path" not in flags:
        argv = ["--data_path", task_file(), *argv]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "out").exists()


def test_text_without_prompts_or_encoder_is_refused(tmp_path, task_file, capsys):
    assert run(["--data_path", task_file("text"), "--output_dir", tmp_path / "o", *TINY_FLAGS]) == 2
    assert "--clip_text_pretrained_path" in capsys.readouterr().err


def test_grayscale_unconditional_model_trains_on_labelled_data(tmp_path, task_file):
    out = tmp_path / "run"
    data = task_file(channels=1)
    assert (
        run(["--data_path", data, "--output_dir", out, "--conditioning", "none", "--max_train_steps", 1, *TINY_FLAGS])
        == 0
    )
    unet = UNet2DModel.from_pretrained(out / "task_2" / "unet")
    assert unet.config.in_channels == 1 and unet.config.num_class_embeds is None
    assert os.path.isfile(out / "task_2" / "samples.png")


def test_text_model_export_is_a_condition_model(tmp_path, task_file, tiny_clip_dir):
    out = tmp_path / "run"
    assert (
        run(
            [
                "--data_path",
                task_file("text"),
                "--output_dir",
                out,
                "--max_train_steps",
                1,
                *TINY_FLAGS,
                "--clip_text_pretrained_path",
                tiny_clip_dir,
                "--validation_prompts",
                "digit 1",
            ]
        )
        == 0
    )
    unet = UNet2DConditionModel.from_pretrained(out / "task_1" / "unet")
    assert unet.config.cross_attention_dim == 16


@pytest.mark.parametrize("scope", [None, "task", "sequence"])
def test_ema_scope_task_restarts_the_average_at_each_task(tmp_path, task_file, scope):
    """--ema_scope task (the default): diffusers' EMA decay is 0 at its first update, so after the one step of task 2
    the restarted EMA equals the training weights exactly; a sequence-wide EMA (decay 1 − 2^−0.75 ≈ 0.41 at global
    step 2) still holds 41 % of task 1's weights."""
    out = tmp_path / "run"
    per_task = scope != "sequence"
    flags = ["--ema_scope", scope] if scope else []
    argv = ["--data_path", task_file(), "--output_dir", out, "--max_train_steps", 1, "--use_ema", *flags, *TINY_FLAGS]
    assert main_ddpm.main([str(a) for a in argv]) == 0
    trained = load_file(out / "task_2" / "unet_training" / "diffusion_pytorch_model.safetensors")
    ema = load_file(out / "task_2" / "unet" / "diffusion_pytorch_model.safetensors")  # inference weights: EMA
    same = all(torch.equal(trained[k], ema[k]) for k in trained)
    assert same == per_task


def test_zero_terminal_snr_v_prediction_trains_exports_and_samples(tmp_path, task_file):
    """--rescale_betas_zero_snr end to end: the export keeps β_T = 1, reloads (β_T = 1 is allowed there for non-ε
    models) and evaluate.py samples finite images with DDIM η = 0.5 from t = T−1."""
    import evaluate
    from continual_diffusers.pipelines.loading import load_task_model

    out = tmp_path / "run"
    argv = ["--data_path", task_file(), "--output_dir", out, "--max_train_steps", 2, "--checkpointing_steps", 0]
    argv += [*TINY_FLAGS, "--prediction_type", "v_prediction", "--rescale_betas_zero_snr"]
    assert run([*argv, "--timestep_sampling", "stratified"]) == 0
    _, _, scheduler, spec = load_task_model(str(out / "task_2"))
    assert scheduler.config.rescale_betas_zero_snr and float(scheduler.betas[-1]) == 1.0
    assert spec.prediction_type == "v_prediction"
    samples = tmp_path / "samples"
    flags = ["--scheduler", "ddim", "--ddim_eta", "0.5", "--num_inference_steps", 3, "--num_samples", 2]
    assert evaluate.main([str(a) for a in ["--model_path", out / "task_2", "--output_dir", samples, *flags]]) == 0
    images = np.load(samples / "samples.npz", allow_pickle=False)["images"]
    assert images.shape[0] == 2 * 4 and images.std() > 0  # NaN samples would be all black
