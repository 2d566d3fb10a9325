"""Per-task LoRA adapters: only the current adapter trains, earlier ones stay frozen, exports are a merged
StableDiffusionPipeline plus adapters that `load_lora_weights` reads, resume is exact, checkpoints are small."""

from __future__ import annotations

import shutil

import pytest
import tiny_sd
import torch
from safetensors.torch import load_file

import main_ldm
from continual_diffusers.models.denoiser import ScoreModel
from continual_diffusers.strategies.lora import LoRAAdapters

LORA_FLAGS = ["--train_batch_size", 4, "--num_inference_steps", 2, "--num_samples", 1, "--logger", "none",
              "--seed", 0, "--validation_prompts", "digit 0", "--lora_rank", 2, "--learning_rate", 1e-2,
              "--max_train_steps", 2]  # fmt: skip

tiny_sd_dir, caption_file = tiny_sd.tiny_sd_dir, tiny_sd.caption_file  # shared session fixtures


def run(argv) -> int:
    return main_ldm.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_sd_dir, caption_file):
    out = tmp_path_factory.mktemp("lora") / "run"
    argv = ["--pretrained_model_name_or_path", tiny_sd_dir, "--data_path", caption_file, "--output_dir", out,
            "--checkpointing_steps", 0, "--buffer_type", "reservoir", "--buffer_size", 4, *LORA_FLAGS]  # fmt: skip
    assert run(argv) == 0
    return out


def _unet(path):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(path, subfolder="unet")


def test_strategy_trains_only_the_current_adapter(tiny_sd_dir):
    unet = _unet(tiny_sd_dir)
    total = sum(p.numel() for p in unet.parameters())
    lora = LoRAAdapters(unet, [1, 2, 3], rank=2, mode="stacked")
    lora.before_task(ScoreModel(unet), 2)
    trainable = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert trainable and all(".task_2." in n for n in trainable)
    assert sum(p.numel() for p in unet.parameters() if p.requires_grad) / total < 0.05
    assert list(unet.active_adapters()) == ["task_1", "task_2"]
    isolated = LoRAAdapters(_unet(tiny_sd_dir), [1, 2, 3], rank=2, mode="isolated")
    assert isolated.active_for(3) == ["task_3"]


def test_export_is_merged_pipeline_plus_loadable_adapters(lora_run, tiny_sd_dir):
    from diffusers import StableDiffusionPipeline

    task2 = lora_run / "task_2"
    for k in (1, 2):
        assert (task2 / "lora" / f"task_{k}" / "pytorch_lora_weights.safetensors").is_file()
    # The adapter of task 1 is frozen during task 2: identical in both exports.
    a = load_file(lora_run / "task_1" / "lora" / "task_1" / "pytorch_lora_weights.safetensors")
    b = load_file(task2 / "lora" / "task_1" / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # unet/ = base + both adapters merged == the base pipeline with both adapters loaded and stacked.
    merged = StableDiffusionPipeline.from_pretrained(task2)
    stacked = StableDiffusionPipeline.from_pretrained(tiny_sd_dir)
    for k in (1, 2):
        stacked.load_lora_weights(task2 / "lora" / f"task_{k}", adapter_name=f"task_{k}")
    stacked.set_adapters(["task_1", "task_2"])
    x, t, states = torch.randn(2, 4, 4, 4), torch.tensor([1, 7]), torch.randn(2, 16, 16)
    with torch.no_grad():
        want = stacked.unet(x, t, encoder_hidden_states=states).sample
        got = merged.unet(x, t, encoder_hidden_states=states).sample
        base = _unet(tiny_sd_dir)(x, t, encoder_hidden_states=states).sample
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, base, atol=1e-4)  # the adapters did learn something
    image = merged("digit 1", num_inference_steps=2, output_type="np").images
    assert image.shape == (1, 8, 8, 3)


def test_base_weights_stay_frozen(lora_run, tiny_sd_dir):
    state = load_file(lora_run / "checkpoint-4" / "model.safetensors")
    base = _unet(tiny_sd_dir).state_dict()
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
    assert torch.equal(state[f"{name}.base_layer.weight"], base[f"{name}.weight"])
    assert torch.equal(state["conv_in.weight"], base["conv_in.weight"])


def test_resume_with_lora_is_exact(tmp_path, tiny_sd_dir, caption_file):
    common = ["--pretrained_model_name_or_path", tiny_sd_dir, "--data_path", caption_file, "--checkpointing_steps", 1,
              *LORA_FLAGS]  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run([*common, "--output_dir", straight]) == 0
    assert run([*common, "--output_dir", resumed]) == 0
    for name in ("checkpoint-4", "task_2"):
        shutil.rmtree(resumed / name)
    assert run([*common, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]) == 0
    a, b = (load_file(d / "checkpoint-4" / "model.safetensors") for d in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
