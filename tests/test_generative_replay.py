"""Generative replay / distillation: frozen teacher, exact distillation target, end-to-end runs, exact resume."""

from __future__ import annotations

import dataclasses
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TINY_FLAGS
from diffusers import DDPMScheduler
from safetensors.torch import load_file

import main_ddpm
from continual_diffusers.models.conditioning import ClassConditioning
from continual_diffusers.models.denoiser import make_denoiser
from continual_diffusers.models.unet import UNetSpec, build_unet
from continual_diffusers.objectives import DenoisingObjective
from continual_diffusers.strategies import GenerativeReplay


def tiny_denoiser(energy=None):
    torch.manual_seed(0)
    spec = UNetSpec(
        8,
        1,
        "class",
        num_classes=4,
        null_class=True,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
    )
    return make_denoiser(build_unet(spec), energy)


def strategy(distillation_weight=0.0, pool_size=0, **kwargs):
    scheduler = DDPMScheduler(num_train_timesteps=10)
    return GenerativeReplay(
        ClassConditioning(4, null_class=True),
        scheduler,
        seed=0,
        replay_ratio=0.5,
        distillation_weight=distillation_weight,
        num_inference_steps=2,
        pool_size=pool_size,
        **kwargs,
    ), scheduler


def finish_task(gr, model, labels):
    gr.after_task(model, SimpleNamespace(dataset=SimpleNamespace(labels=np.array(labels))))


def test_no_teacher_before_the_first_task_ends():
    gr, _ = strategy()
    model = tiny_denoiser()
    gr.before_task(model, 1)
    assert gr.teacher is None and gr.replay_batch(4, torch.Generator().manual_seed(0)) is None


def test_teacher_is_a_frozen_copy_unchanged_by_training():
    gr, _ = strategy()
    model = tiny_denoiser()
    finish_task(gr, model, [0, 1, 1])
    gr.before_task(model, 2)
    before = {k: v.clone() for k, v in gr.teacher.state_dict().items()}
    assert all(not p.requires_grad for p in gr.teacher.parameters())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # training the student must not move the teacher
    assert all(torch.equal(before[k], v) for k, v in gr.teacher.state_dict().items())
    batch = gr.replay_batch(4, torch.Generator().manual_seed(0))
    assert batch["images"].shape == (4, 1, 8, 8) and set(batch["labels"].tolist()) <= {0, 1}
    finish_task(gr, model, [2, 3])
    assert gr.teacher is None and gr.past_labels == [0, 1, 2, 3]  # teacher memory freed between tasks


@pytest.mark.parametrize("energy", [None, "dae"])
def test_distillation_target_is_the_teachers_prediction_on_the_same_input(energy):
    gr, scheduler = strategy(distillation_weight=3.0)
    model = tiny_denoiser(energy).train()
    finish_task(gr, model, [0, 1])
    gr.before_task(model, 2)
    replay = gr.replay_batch(2, torch.Generator().manual_seed(1))  # 2 replay rows after 2 current rows
    assert replay["loss_weight"] == 0.0  # distillation replaces the replays' noise regression
    x0 = torch.cat([torch.zeros(2, 1, 8, 8), replay["images"]])
    labels = torch.cat([torch.tensor([2, 3]), replay["labels"]])
    labels[-1] = 4  # classifier-free-guidance dropout hit the last replay row: the teacher must see the null class
    out = DenoisingObjective(scheduler, "epsilon")(
        model, x0, {"class_labels": labels}, torch.Generator().manual_seed(0)
    )
    out = dataclasses.replace(out, num_replay=2)  # as the trainer marks the replayed rows
    penalty = gr.penalty(model, out)
    teacher = gr.teacher(out.x_t[2:], out.t[2:], class_labels=labels[2:]).prediction.detach()
    expected = 3.0 * (out.prediction[2:] - teacher).pow(2).flatten(1).mean(1).sum() / 4
    torch.testing.assert_close(penalty, expected)
    assert penalty.item() == pytest.approx(0.0, abs=1e-10)  # the student still equals its teacher
    penalty.backward()  # differentiable w.r.t. the student


def _prediction_offset(eps_offset: float, prediction_type: str, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The change of an ε / x₀ / v prediction at fixed x_t when ε̂ moves by `eps_offset` (x₀ = (x_t − σε)/√ᾱ,
    v = (ε − σ x_t)/√ᾱ): (B, 1, 1, 1)."""
    root, sigma = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    scale = {"epsilon": torch.ones_like(root), "sample": -sigma / root, "v_prediction": 1 / root}[prediction_type]
    return (eps_offset * scale).view(-1, 1, 1, 1)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("snr_gamma", [None, 5.0])
def test_distillation_is_the_main_loss_against_the_teacher_in_closed_form(prediction_type, snr_gamma):
    """A student whose ε̂ is its teacher's plus c on every pixel: the penalty is λ·Σ_replay w_ε(t)·c²/B with the
    ε-equivalent weight of the main loss, w_ε = min(1, γ/SNR_t) under min-SNR-γ for every parameterisation, and
    without it 1 (ε), 1/ᾱ_t (v: ‖Δv‖² = ‖Δε‖²/ᾱ) and 1 (x₀, weighted by SNR). The unweighted regression of the
    teacher's v or x₀ (c²/ᾱ_t, c²/SNR_t) fails every γ = 5 case and the x₀ case without it."""
    gr, _ = strategy(distillation_weight=3.0)
    scheduler = DDPMScheduler(prediction_type=prediction_type)  # T = 1000: SNR_t from 1e4 down to 4e-5
    model = tiny_denoiser().eval()
    finish_task(gr, model, [0, 1])
    gr.before_task(model, 2)
    replay = gr.replay_batch(4, torch.Generator().manual_seed(1))  # 4 replay rows after 4 current rows
    x0 = torch.cat([torch.zeros(4, 1, 8, 8), replay["images"]])
    labels = torch.cat([torch.tensor([2, 3, 2, 3]), replay["labels"]])
    objective = DenoisingObjective(scheduler, prediction_type, snr_gamma=snr_gamma)
    out = objective(model, x0, {"class_labels": labels}, torch.Generator().manual_seed(0))
    alpha_bar = scheduler.alphas_cumprod[out.t]
    c = 0.3
    student = out.prediction.detach() + _prediction_offset(c, prediction_type, alpha_bar)
    out = dataclasses.replace(out, prediction=student, num_replay=4)
    snr = alpha_bar / (1 - alpha_bar)
    if snr_gamma is not None:
        w_eps = (snr_gamma / snr).clamp(max=1.0)
    else:
        w_eps = 1 / alpha_bar if prediction_type == "v_prediction" else torch.ones_like(snr)
    expected = 3.0 * (w_eps[4:] * c**2).sum() / 8
    assert out.t[4:].max() > 100  # the rows span noise levels where the weights differ
    torch.testing.assert_close(gr.penalty(model, out), expected.float(), rtol=1e-4, atol=0)


def test_pool_is_drawn_once_and_deterministic():
    gr, _ = strategy(pool_size=6)
    model = tiny_denoiser()
    finish_task(gr, model, [0, 1])
    gr.before_task(model, 2)
    pool_a = gr._pool[0].clone()
    gr.before_task(model, 2)
    assert torch.equal(pool_a, gr._pool[0])
    a = gr.replay_batch(4, torch.Generator().manual_seed(3))
    b = gr.replay_batch(4, torch.Generator().manual_seed(3))
    assert torch.equal(a["images"], b["images"])


@pytest.mark.parametrize(
    "flags", [[], ["--distillation_weight", "3", "--energy_based_training"]], ids=["gr-score", "distill-energy"]
)
def test_three_tasks_train_and_resume_exactly(tmp_path, task_file, flags):
    data = task_file(num_tasks=3)
    common = [
        "--data_path",
        data,
        "--max_train_steps",
        2,
        "--checkpointing_steps",
        1,
        "--strategy",
        "generative_replay",
        "--gr_num_inference_steps",
        2,
        "--classifier_free_guidance",
        *TINY_FLAGS,
        *flags,
    ]
    straight, resumed = tmp_path / "a", tmp_path / "b"
    assert main_ddpm.main([str(a) for a in [*common, "--output_dir", straight]]) == 0
    assert main_ddpm.main([str(a) for a in [*common, "--output_dir", resumed]]) == 0
    shutil.rmtree(resumed / "checkpoint-6")  # stop after step 5: mid task 3, the teacher is task 2's end state
    shutil.rmtree(resumed / "task_3")
    assert (
        main_ddpm.main([str(a) for a in [*common, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]]) == 0
    )
    a, b = (
        load_file(straight / "checkpoint-6" / "model.safetensors"),
        load_file(resumed / "checkpoint-6" / "model.safetensors"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = load_file(straight / "checkpoint-5" / "strategy.safetensors")
    assert any(k.startswith("teacher.") for k in state)  # mid-task checkpoints carry the teacher


def test_ema_teacher_takes_the_ema_weights():
    gr, _ = strategy(teacher="ema")
    model = tiny_denoiser()
    finish_task(gr, model, [0, 1])
    with pytest.raises(ValueError, match="--use_ema"):
        gr.before_task(model, 2)

    def apply_ema(copy):  # stands in for the trainer's EMA: writes known weights into the copy's UNet
        with torch.no_grad():
            for p in copy.unet.parameters():
                p.fill_(0.5)

    gr.before_task(model, 2, apply_ema=apply_ema)
    assert all(torch.all(p == 0.5) for p in gr.teacher.unet.parameters())
    assert not any(torch.all(p == 0.5) for p in model.unet.parameters())  # the student keeps its own weights
    plain, _ = strategy()
    finish_task(plain, model, [0, 1])
    plain.before_task(model, 2, apply_ema=apply_ema)  # teacher="model" ignores the EMA
    assert all(torch.equal(a, b) for a, b in zip(plain.teacher.parameters(), model.parameters()))


def test_noise_inputs_replay_standard_normal_images_and_noisy_inputs_stay_standard_normal():
    gr, scheduler = strategy(distillation_weight=3.0, distillation_inputs="noise")
    model = tiny_denoiser()
    finish_task(gr, model, [0, 1])
    gr.before_task(model, 2)
    batch = gr.replay_batch(256, torch.Generator().manual_seed(0))
    assert gr.teacher_forwards == 0  # nothing is sampled from the teacher
    assert batch["images"].shape == (256, 1, 8, 8) and batch["loss_weight"] == 0.0
    assert set(batch["labels"].tolist()) == {0, 1}
    # x_t = √ᾱ x₀ + √(1−ᾱ) ε with x₀, ε ~ N(0, I) is N(0, I) at every t: 16,384 values, mean ± 0.03, var ± 0.05.
    out = DenoisingObjective(scheduler, "epsilon")(
        model, batch["images"], {"class_labels": batch["labels"]}, torch.Generator().manual_seed(1)
    )
    assert abs(out.x_t.mean().item()) < 0.03 and abs(out.x_t.var().item() - 1.0) < 0.05
    penalty = gr.penalty(model, dataclasses.replace(out, num_replay=256))
    assert penalty.item() == pytest.approx(0.0, abs=1e-10) and gr.teacher_forwards == 256


def test_buffer_inputs_distil_on_the_rows_buffer_replay_added():
    gr, scheduler = strategy(distillation_weight=2.0, distillation_inputs="buffer")
    model = tiny_denoiser()
    finish_task(gr, model, [0, 1])
    gr.before_task(model, 2)
    assert gr.replay_batch(4, torch.Generator().manual_seed(0)) is None and gr._pool is None
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # the student has moved away from its teacher
    x0, labels = torch.randn(5, 1, 8, 8), torch.tensor([2, 3, 3, 0, 1])
    out = DenoisingObjective(scheduler, "epsilon")(
        model, x0, {"class_labels": labels}, torch.Generator().manual_seed(0)
    )
    assert gr.penalty(model, out) is None  # no replayed rows in this batch
    out = dataclasses.replace(out, num_replay=2)
    teacher = gr.teacher(out.x_t[3:], out.t[3:], class_labels=labels[3:]).prediction
    expected = 2.0 * (out.prediction[3:] - teacher).pow(2).flatten(1).mean(1).sum() / 5
    torch.testing.assert_close(gr.penalty(model, out), expected)
    assert expected.item() > 0


def test_variants_need_distillation():
    with pytest.raises(ValueError, match="distillation_weight > 0"):
        strategy(distillation_inputs="noise")


def test_replays_of_several_strategies_keep_their_own_loss_weights():
    from continual_diffusers.strategies.combined import _concat

    buffer = {"images": torch.zeros(2, 1, 8, 8), "labels": torch.tensor([0, 1])}
    generated = {"images": torch.ones(3, 1, 8, 8), "labels": torch.tensor([1, 1, 0]), "loss_weight": 0.0}
    batch = _concat([buffer, generated])
    assert batch["labels"].tolist() == [0, 1, 1, 1, 0]
    assert batch["loss_weight"].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert _concat([generated, generated])["loss_weight"] == 0.0


@pytest.mark.parametrize(
    "flags",
    [
        ["--distillation_inputs", "noise", "--gr_teacher", "ema", "--use_ema"],
        ["--distillation_inputs", "buffer", "--buffer_type", "reservoir", "--buffer_size", "6"],
        ["--buffer_type", "reservoir", "--buffer_size", "6"],  # generated replays + buffer replays, per-row weights
    ],
    ids=["noise-ema", "buffer", "generated+buffer"],
)
def test_distillation_variants_train(tmp_path, task_file, flags):
    out = tmp_path / "run"
    argv = [
        "--data_path", task_file(num_tasks=2), "--output_dir", out, "--max_train_steps", 2,
        "--checkpointing_steps", 0, "--strategy", "generative_replay", "--gr_num_inference_steps", 1,
        "--distillation_weight", 3, *TINY_FLAGS, *flags,
    ]  # fmt: skip
    assert main_ddpm.main([str(a) for a in argv]) == 0
    assert (out / "task_2" / "unet" / "config.json").is_file()
    state = json.loads((out / "checkpoint-4" / "strategy.json").read_text())
    key = next(k for k in state if k.endswith("teacher_forwards"))  # "generative_replay/…" when combined
    assert state[key] > 0  # task 2 distilled the teacher on its replay rows


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--distillation_inputs", "noise"], "needs --distillation_weight > 0"),
        (["--distillation_inputs", "buffer", "--distillation_weight", "1"], "add --buffer_type"),
        (["--distillation_inputs", "noise", "--distillation_weight", "1", "--gr_pool_size", "8"], "no effect"),
        (["--gr_teacher", "ema"], "needs --use_ema"),
    ],
)
def test_variant_flag_errors(tmp_path, task_file, capsys, flags, message):
    argv = ["--data_path", task_file(num_tasks=2), "--output_dir", tmp_path / "run", "--strategy",
            "generative_replay", *TINY_FLAGS, *flags]  # fmt: skip
    assert main_ddpm.main([str(a) for a in argv]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()
