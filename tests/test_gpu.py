"""CUDA checks: what the CPU suite cannot see. Marker `gpu`: skipped without a CUDA device and deselected by
`make test`; on a GPU machine run

    pytest -m gpu tests/test_gpu.py

- the energy model's double backward with CUDA's fused attention kernels (which have no double backward), matched
  against the CPU in float32, and under bf16 autocast;
- main_ddpm end to end on the GPU (a subprocess per run: accelerate's state is per process) under fp16 loss
  scaling and bf16 autocast: score / energy, class / slot conditioning, with replay + EWC + SI + EMA;
- every annealed MCMC sampler through evaluate.py on CUDA generators (same seed → same samples);
- main_ldm with LoRA under fp16.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tiny_sd
import torch
from conftest import TINY_FLAGS, make_tasks
from test_energy_model import tiny_unet

from continual_diffusers.data import save_tasks
from continual_diffusers.models.denoiser import EnergyModel

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tiny_sd_dir, caption_file = tiny_sd.tiny_sd_dir, tiny_sd.caption_file  # shared session fixtures

# Runs an entry point's main() and reports the CUDA memory it peaked at: > 0 proves the job ran on the GPU.
_PROBE = (
    "import sys, torch, {module}; code = {module}.main(sys.argv[1:]); "
    "print('cuda_peak_bytes', torch.cuda.max_memory_allocated()); sys.exit(code)"
)


def run_on_gpu(module: str, argv: list) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module), *map(str, argv)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    peak = int(proc.stdout.rsplit("cuda_peak_bytes", 1)[1].split()[0])
    assert peak > 0, "the job did not allocate CUDA memory: it ran on the CPU"
    return proc.stderr


@pytest.fixture
def exact_float32():
    """TF32 matmuls / convolutions round to 10 mantissa bits: off for the CPU comparison."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _energy_step(model, device, dtype=None):
    """ε̂ and the parameter gradients of ‖ε̂ − ε‖² (double backward through ∇ₓE) on fixed inputs."""
    g = torch.Generator().manual_seed(0)
    x, target = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    t, y = torch.tensor([0, 3, 6, 9]), torch.tensor([0, 1, 2, 3])
    model.zero_grad(set_to_none=True)
    with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
        eps = model(x.to(device), t.to(device), class_labels=y.to(device)).prediction
        loss = (eps.float() - target.to(device)).pow(2).mean()
    loss.backward()
    grads = {n: p.grad.float().cpu() for n, p in model.named_parameters() if p.grad is not None}
    return eps.detach().float().cpu(), grads


@pytest.mark.parametrize("energy_type", ["l2", "dae"])
def test_energy_double_backward_on_cuda_matches_cpu(exact_float32, energy_type):
    # tiny_unet has an attention block: on CUDA, float32 SDPA would pick the memory-efficient kernel, which has no
    # double backward; the energy model must route it to the math kernel.
    cpu = EnergyModel(tiny_unet(), energy_type).train()
    gpu = copy.deepcopy(cpu).cuda()
    eps_cpu, grads_cpu = _energy_step(cpu, "cpu")
    eps_gpu, grads_gpu = _energy_step(gpu, "cuda")
    torch.testing.assert_close(eps_gpu, eps_cpu, rtol=1e-4, atol=1e-5)
    assert grads_gpu.keys() == grads_cpu.keys() and len(grads_cpu) > 0
    for name, grad in grads_cpu.items():
        torch.testing.assert_close(grads_gpu[name], grad, rtol=1e-3, atol=1e-5, msg=name)


def test_energy_double_backward_under_bf16_autocast():
    model = EnergyModel(tiny_unet(), "dae").train().cuda()
    eps, grads = _energy_step(model, "cuda", torch.bfloat16)
    assert torch.isfinite(eps).all() and all(torch.isfinite(g).all() for g in grads.values())
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0


STRATEGIES = ["--buffer_type", "reservoir", "--buffer_size", 4, "--num_samples_ewc", 2, "--strategy", "ewc"]
TRAIN_CASES = {
    "score-fp16-replay-ewc": ["--mixed_precision", "fp16", *STRATEGIES],
    "score-bf16-replay-ewc-si": ["--mixed_precision", "bf16", *STRATEGIES, "si"],
    "energy-bf16-replay-ewc": ["--mixed_precision", "bf16", "--energy_based_training", *STRATEGIES],
    "energy-fp16": ["--mixed_precision", "fp16", "--energy_based_training", "--energy_score_type", "l2"],
    "slots-bf16": ["--mixed_precision", "bf16", "--conditioning", "slots", "--num_slots", 3, "--slot_dim", 8,
                   "--slot_encoder_channels", 8, "--slot_init", "sampled", "--slot_pixel_tokens"],
}  # fmt: skip


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_main_ddpm_two_tasks_on_cuda(tmp_path, case):
    data = tmp_path / "tasks.npz"
    save_tasks(str(data), make_tasks("none" if "slots" in case else "class"))
    out = tmp_path / "run"
    argv = ["--data_path", data, "--output_dir", out, "--max_train_steps", 3, "--use_ema", "--checkpointing_steps", 2,
            "--classifier_free_guidance", *TINY_FLAGS, *TRAIN_CASES[case]]  # fmt: skip
    run_on_gpu("main_ddpm", argv)
    from safetensors.torch import load_file

    for k in (1, 2):
        weights = load_file(out / f"task_{k}" / "unet" / "diffusion_pytorch_model.safetensors")
        assert all(torch.isfinite(w).all() for w in weights.values()), f"task {k}: non-finite weights"
        assert (out / f"task_{k}" / "samples.png").is_file()
    # The run resumes from its last checkpoint on the GPU (a finished run: nothing left to train, exit 0).
    run_on_gpu("main_ddpm", [*argv, "--resume_from_checkpoint", "latest"])


@pytest.fixture(scope="module")
def energy_model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("energy")
    data = root / "tasks.npz"
    save_tasks(str(data), make_tasks("class", num_tasks=1))
    argv = ["--data_path", data, "--output_dir", root / "run", "--max_train_steps", 2, "--checkpointing_steps", 0,
            "--classifier_free_guidance", "--energy_based_training", *TINY_FLAGS]  # fmt: skip
    run_on_gpu("main_ddpm", argv)
    return root / "run" / "task_1"


@pytest.mark.parametrize("sampler", ["ULA", "MALA", "UHA", "CHA"])
def test_mcmc_samplers_on_cuda_are_seeded(tmp_path, energy_model_dir, sampler):
    samples = []
    for run in ("a", "b"):
        out = tmp_path / run
        argv = ["--model_path", energy_model_dir, "--output_dir", out, "--mcmc_sampler", sampler,
                "--num_samples", 2, "--class_labels", 0, 1, "--num_inference_steps", 3, "--scheduler", "ddpm",
                "--num_samples_per_step", 2, "--num_leapfrog_steps", 2, "--mcmc_sampler_start_timestep", 0,
                "--guidance_scale", 2.0, "--no_progress"]  # fmt: skip
        run_on_gpu("evaluate", argv)
        samples.append(np.load(out / "samples.npz")["images"])
        record = json.loads((out / "run.json").read_text())
        assert all(0 <= r <= 1 for r in record["acceptance_rate_per_timestep"].values())
    assert samples[0].shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(samples[0], samples[1])


def test_main_ldm_lora_fp16_on_cuda(tmp_path, tiny_sd_dir, caption_file):
    out = tmp_path / "run"
    argv = ["--pretrained_model_name_or_path", tiny_sd_dir, "--data_path", caption_file, "--output_dir", out,
            "--max_train_steps", 2, "--checkpointing_steps", 0, "--train_batch_size", 4, "--num_inference_steps", 2,
            "--num_samples", 1, "--logger", "none", "--seed", 0, "--validation_prompts", "digit 0",
            "--lora_rank", 2, "--mixed_precision", "fp16", "--cache_latents"]  # fmt: skip
    run_on_gpu("main_ldm", argv)
    for k in (1, 2):
        assert (out / f"task_{k}" / "lora" / f"task_{k}" / "pytorch_lora_weights.safetensors").is_file()
