"""main_ldm end to end on a tiny SD-layout pipeline: scratch / fine-tune, score / energy, replay with captions,
2 tasks × 2 steps; exports are StableDiffusionPipelines; resume is exact; latent caching is exact in distribution;
bad inputs exit 2 with one line."""

from __future__ import annotations

import json
import shutil

import pytest
import tiny_sd
import torch
from conftest import make_tasks
from safetensors.torch import load_file

import main_ldm
from continual_diffusers.data import ImageTransform, TaskDataset, save_tasks
from continual_diffusers.models.latent import LatentCodec, LatentTaskDataset, load_sd_components

LDM_FLAGS = ["--train_batch_size", 4, "--num_inference_steps", 2, "--num_samples", 1, "--logger", "none",
             "--seed", 0, "--validation_prompts", "digit 0", "digit 3"]  # fmt: skip

tiny_sd_dir, caption_file = tiny_sd.tiny_sd_dir, tiny_sd.caption_file  # shared session fixtures


def run(argv) -> int:
    return main_ldm.main([str(a) for a in argv])


VARIANTS = {
    "score-scratch": ["--unet_scratch"],
    "score-finetune-cache-ema": ["--cache_latents", "--use_ema", "--random_flip"],
    "vpred-snr": ["--prediction_type", "v_prediction", "--snr_gamma", 5.0],
    "vpred-zero-snr": [
        "--prediction_type",
        "v_prediction",
        "--rescale_betas_zero_snr",
        "--timestep_sampling",
        "stratified",
    ],  # fmt: skip
    "energy-dae-scratch": ["--unet_scratch", "--energy_based_training", "--energy_score_type", "dae"],
    "energy-l2": ["--energy_based_training", "--energy_score_type", "l2", "--cache_latents"],
    "replay-captions": ["--buffer_type", "reservoir", "--buffer_size", 4, "--cache_latents"],
    "generative-distillation": [
        "--strategy",
        "generative_replay",
        "--gr_num_inference_steps",
        2,
        "--distillation_weight",
        3.0,
        "--cache_latents",
    ],
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_two_tasks_train_and_export_pipelines(tmp_path, tiny_sd_dir, caption_file, variant):
    from diffusers import StableDiffusionPipeline

    out = tmp_path / "run"
    argv = ["--pretrained_model_name_or_path", tiny_sd_dir, "--data_path", caption_file, "--output_dir", out,
            "--max_train_steps", 2, "--checkpointing_steps", 0, *LDM_FLAGS, *VARIANTS[variant]]  # fmt: skip
    assert run(argv) == 0
    energy = "energy" in variant
    for k in (1, 2):
        task_dir = out / f"task_{k}"
        for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
            assert (task_dir / sub).is_dir(), sub
        assert (task_dir / "samples.png").is_file()
        meta = json.loads((task_dir / "continual_diffusers.json").read_text())
        assert meta["latent"]["scaling_factor"] == pytest.approx(0.18215) and meta["seen_tasks"] == list(
            range(1, k + 1)
        )
        assert (task_dir / "model_index.json").is_file() != energy  # a stock pipeline cannot run an energy UNet
    if "vpred" in variant:
        schedule = json.loads((out / "task_2" / "scheduler" / "scheduler_config.json").read_text())
        assert schedule["prediction_type"] == "v_prediction"
        assert schedule["rescale_betas_zero_snr"] == ("zero-snr" in variant)
    if not energy:
        pipe = StableDiffusionPipeline.from_pretrained(out / "task_2")
        image = pipe("digit 1", num_inference_steps=2, output_type="np").images
        assert image.shape == (1, 8, 8, 3) and pipe.unet.config.sample_size == 4


def test_resume_mid_task_gives_identical_weights(tmp_path, tiny_sd_dir, caption_file):
    common = ["--pretrained_model_name_or_path", tiny_sd_dir, "--data_path", caption_file, "--max_train_steps", 3,
              "--checkpointing_steps", 2, "--use_ema", "--random_flip", "--buffer_type", "reservoir",
              "--buffer_size", 4, *LDM_FLAGS]  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run([*common, "--output_dir", straight]) == 0
    assert run([*common, "--output_dir", resumed]) == 0
    for name in ("checkpoint-6", "task_2"):  # stop after global step 4 (mid task 2) and resume from there
        shutil.rmtree(resumed / name)
    assert run([*common, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]) == 0
    a, b = (load_file(d / "checkpoint-6" / "model.safetensors") for d in (straight, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cached_latents_match_per_step_encoding(tiny_sd_dir):
    """With a deterministic transform the cache draws the same posterior sample as encoding every step."""
    codec = LatentCodec(load_sd_components(tiny_sd_dir).vae)
    base = TaskDataset(make_tasks("text")[1], ImageTransform(8, center_crop=True))
    idx = torch.tensor([3, 0, 5])
    batches = [
        LatentTaskDataset(base, codec, cache).batch(idx, torch.Generator().manual_seed(1)) for cache in (False, True)
    ]
    torch.testing.assert_close(batches[0]["images"], batches[1]["images"], rtol=1e-5, atol=1e-5)
    assert batches[0]["labels"] == batches[1]["labels"] and batches[0]["images"].shape == (3, 4, 4, 4)


def _without(src: str, dst, sub: str) -> str:
    shutil.copytree(src, dst)
    shutil.rmtree(dst / sub)
    return str(dst)


def _mismatched_tokenizer(src: str, dst) -> str:
    from transformers import CLIPTokenizer

    shutil.copytree(src, dst)
    tokenizer = CLIPTokenizer.from_pretrained(dst / "tokenizer")
    tokenizer.add_tokens([f"<new{i}>" for i in range(8)])
    tokenizer.save_pretrained(dst / "tokenizer")
    return str(dst)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_vae", "missing subfolder(s) vae/"),
        ("tokenizer_mismatch", "tokenizer and text encoder do not belong together"),
        ("class_labels", "needs caption labels"),
        ("ddpm_schedule", "--ddpm_num_steps / --ddpm_beta_schedule do not apply"),
        ("resolution", "not divisible by the VAE's factor 2"),
        ("zero_snr_epsilon", "ε-prediction cannot recover x₀"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, tiny_sd_dir, caption_file, capsys, case, message):
    sd, data, extra = tiny_sd_dir, caption_file, []
    if case == "missing_vae":
        sd = _without(tiny_sd_dir, tmp_path / "sd", "vae")
    elif case == "tokenizer_mismatch":
        sd = _mismatched_tokenizer(tiny_sd_dir, tmp_path / "sd")
    elif case == "class_labels":
        data = str(tmp_path / "classes.npz")
        save_tasks(data, make_tasks("class"))
    elif case == "ddpm_schedule":
        extra = ["--ddpm_num_steps", 10]
    elif case == "resolution":
        extra = ["--resolution", 7]
    elif case == "zero_snr_epsilon":  # the tiny SD's scheduler predicts ε
        extra = ["--rescale_betas_zero_snr"]
    argv = ["--pretrained_model_name_or_path", sd, "--data_path", data, "--output_dir", tmp_path / "out", *LDM_FLAGS]
    assert run([*argv, *extra]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "Loading weights" not in line]
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "out").exists()


def test_gradient_checkpointing_recomputes_activations_and_gives_the_same_weights(
    tmp_path, tiny_sd_dir, caption_file, monkeypatch
):
    import torch.utils.checkpoint

    calls = []
    original = torch.utils.checkpoint.checkpoint

    def counting_checkpoint(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    # diffusers binds torch.utils.checkpoint.checkpoint when checkpointing is enabled, so patch it before the run
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting_checkpoint)
    common = ["--pretrained_model_name_or_path", tiny_sd_dir, "--data_path", caption_file, "--max_train_steps", 2,
              "--checkpointing_steps", 0, *LDM_FLAGS]  # fmt: skip
    assert run([*common, "--output_dir", tmp_path / "plain"]) == 0
    assert not calls
    assert run([*common, "--output_dir", tmp_path / "checkpointed", "--gradient_checkpointing"]) == 0
    assert calls  # the UNet's blocks really went through activation checkpointing
    a, b = (load_file(tmp_path / d / "checkpoint-4" / "model.safetensors") for d in ("plain", "checkpointed"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
