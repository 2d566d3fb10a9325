"""evaluate.py on exported latent models: ancestral / ULA / UHA (score), MALA / CHA (energy), a 2-prompt
composition with a negative weight, negative prompts; images are decoded by the exported VAE."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiny_sd

import evaluate
import main_ldm

TRAIN = ["--train_batch_size", 4, "--num_inference_steps", 2, "--num_samples", 1, "--logger", "none", "--seed", 0,
         "--validation_prompts", "digit 0", "--max_train_steps", 1, "--checkpointing_steps", 0,
         "--uncond_p", 0.5]  # fmt: skip

tiny_sd_dir, caption_file = tiny_sd.tiny_sd_dir, tiny_sd.caption_file  # shared session fixtures


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_sd_dir, caption_file):
    root = tmp_path_factory.mktemp("ldm_eval")
    out = {}
    for name, extra in {"score": [], "energy": ["--energy_based_training", "--unet_scratch"]}.items():
        argv = ["--pretrained_model_name_or_path", tiny_sd_dir, "--data_path", caption_file,
                "--output_dir", root / name, *TRAIN, *extra]  # fmt: skip
        assert main_ldm.main([str(a) for a in argv]) == 0
        out[name] = root / name / "task_2"
    return out


def sample(model_dir, out, *flags) -> int:
    argv = ["--model_path", model_dir, "--output_dir", out, "--num_samples", 2, "--num_inference_steps", 2,
            "--no_progress", *flags]  # fmt: skip
    return evaluate.main([str(a) for a in argv])


@pytest.mark.parametrize(
    "model, flags",
    [
        ("score", []),
        ("score", ["--mcmc_sampler", "ULA", "--scheduler", "ddpm"]),
        ("score", ["--mcmc_sampler", "UHA", "--scheduler", "euler_a"]),
        ("score", ["--negative_prompt", "digit 2", "--guidance_scale", 3]),
        ("energy", []),
        ("energy", ["--mcmc_sampler", "MALA", "--scheduler", "ddpm"]),
        ("energy", ["--mcmc_sampler", "CHA", "--num_leapfrog_steps", 2, "--scheduler", "ddpm"]),
    ],
    ids=["ancestral", "ula", "uha", "negative", "energy", "mala", "cha"],
)
def test_samplers_write_decoded_images(models, tmp_path, model, flags):
    out = tmp_path / "eval"
    if flags[:1] == ["--mcmc_sampler"]:
        flags = [*flags, "--mcmc_sampler_start_timestep", 0]  # the tiny schedule has T = 10
    assert sample(models[model], out, "--validation_prompts", "digit 0", "digit 3", *flags) == 0
    saved = np.load(out / "samples.npz", allow_pickle=False)
    assert saved["images"].shape == (4, 8, 8, 3)  # decoded to pixels (latents are 4×4×4)
    run = json.loads((out / "run.json").read_text())
    if flags[:1] == ["--mcmc_sampler"]:
        assert run["num_mcmc_grad_evals"] > 0
        if flags[1] in ("MALA", "CHA"):
            assert 0.0 <= run["mean_acceptance_rate"] <= 1.0


@pytest.mark.parametrize("model", ["score", "energy"])
def test_two_prompt_composition_with_negative_weight(models, tmp_path, model):
    out = tmp_path / "eval"
    assert sample(models[model], out, "--validation_prompts", "digit 0 | digit 3", "--weights_prompt", "3 | -1") == 0
    run = json.loads((out / "run.json").read_text())
    assert run["composition"]["labels"] == ["digit 0", "digit 3"] and run["composition"]["weights"] == [3.0, -1.0]
    assert np.load(out / "samples.npz")["images"].shape == (2, 8, 8, 3)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--validation_prompts", "a | b", "--weights_prompt", "1 | 2 | 3"], "--weights_prompt has 3 weights for 2"),
        (
            ["--validation_prompts", "a", "b", "--negative_prompt", "x", "y", "z", "--guidance_scale", 2],
            "--negative_prompt has 3 prompts for 2 prompt(s)",
        ),
        (["--validation_prompts", "a | b", "c"], "compose one"),
        (["--validation_prompts", "a", "--negative_prompt", "x", "--guidance_scale", 1], "acts through guidance"),
    ],
)
def test_bad_prompt_flags_exit_2(models, tmp_path, capsys, flags, message):
    assert sample(models["score"], tmp_path / "eval", *flags) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "Loading weights" not in line]
    assert len(err) == 1 and message in err[0], err
