"""Generative replay / distillation: frozen teacher, exact distillation target, end-to-end runs, exact resume."""

from __future__ import annotations

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


def strategy(distillation_weight=0.0, pool_size=0):
    scheduler = DDPMScheduler(num_train_timesteps=10)
    return GenerativeReplay(
        ClassConditioning(4, null_class=True),
        scheduler,
        seed=0,
        replay_ratio=0.5,
        distillation_weight=distillation_weight,
        num_inference_steps=2,
        pool_size=pool_size,
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
    out = DenoisingObjective(scheduler, "epsilon")(
        model, x0, {"class_labels": labels}, torch.Generator().manual_seed(0)
    )
    penalty = gr.penalty(model, out)
    teacher = gr.teacher(out.x_t[2:], out.t[2:], class_labels=replay["labels"]).prediction.detach()
    expected = 3.0 * (out.prediction[2:] - teacher).pow(2).flatten(1).mean(1).sum() / 4
    torch.testing.assert_close(penalty, expected)
    assert penalty.item() == pytest.approx(0.0, abs=1e-10)  # the student still equals its teacher
    penalty.backward()  # differentiable w.r.t. the student


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
