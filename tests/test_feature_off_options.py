"""Options of a feature the model does not have are refused with one line, the same rule in the library (sampling,
the pipeline) and the command-line tools: a guidance scale ≠ 1 on a model trained without classifier-free guidance
(it would give exactly the images of 1), and a negative composition weight without a null condition (it would
sample an inverse density instead of negating). A guidance scale left out is the model's own default."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_FLAGS, make_tasks, tiny_class_unet
from diffusers import DDPMScheduler

import evaluate
import main_ddpm
from continual_diffusers import ContinualDiffusionPipeline, UserInputError
from continual_diffusers.data import save_tasks
from continual_diffusers.models.conditioning.class_label import ClassConditioning
from continual_diffusers.models.denoiser import ScoreModel
from continual_diffusers.sampling.generate import (
    DEFAULT_GUIDANCE_SCALE,
    CompositionOptions,
    SamplerOptions,
    generate,
    resolve_guidance,
)
from continual_diffusers.training.export import write_export

SCHEDULE = DDPMScheduler(num_train_timesteps=10)


def _export(root, cfg: bool) -> str:
    """A class model over 4 classes, trained with CFG (a null class) or without."""
    meta = {
        "format": "continual-diffusers/model-v1", "conditioning": "class", "num_classes": 4,
        "null_class_index": 4 if cfg else None, "classifier_free_guidance": cfg, "energy_type": None,
        "prediction_type": "epsilon", "resolution": 8, "in_channels": 3,
        "classes_per_task": {"1": [0, 1], "2": [2, 3]}, "validation_prompts": [], "task_id": 2, "seen_tasks": [1, 2],
        "global_step": 4,
    }  # fmt: skip
    unet = tiny_class_unet(5 if cfg else 4)
    return write_export(str(root / ("cfg" if cfg else "plain") / "task_2"), ScoreModel(unet), None, SCHEDULE, meta)


def _one_error_line(capsys, code) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_guidance_left_out_is_the_models_own_and_a_given_one_is_checked():
    assert resolve_guidance(None, True) == DEFAULT_GUIDANCE_SCALE == 2.0
    assert resolve_guidance(None, False) == 1.0
    assert resolve_guidance(1, False) == 1.0 and resolve_guidance(3, True) == 3.0
    with pytest.raises(UserInputError, match="--guidance_scale 5 needs a model trained with classifier-free"):
        resolve_guidance(5, False, "--guidance_scale")


def test_library_sampling_refuses_guidance_and_negation_without_a_null_condition():
    model = ScoreModel(tiny_class_unet(4)).eval()
    plain = ClassConditioning(4, null_class=False)
    with pytest.raises(UserInputError, match="guidance_scale 3 needs a model trained with classifier-free"):
        generate(model, plain, SCHEDULE, [0, 1], SamplerOptions("ddpm", 2, 3.0), "cpu")
    negated = SamplerOptions("ddpm", 2, composition=CompositionOptions((2, 3), (3.0, -1.0)))
    with pytest.raises(UserInputError, match="composition weight -1: negation needs the null condition"):
        generate(model, plain, SCHEDULE, [None, None], negated, "cpu")
    # What stays allowed: no guidance, and the product of experts Π_k p_k^{w_k} with positive weights.
    assert generate(model, plain, SCHEDULE, [0, 1], SamplerOptions("ddpm", 2), "cpu").images().shape == (2, 3, 8, 8)
    product = SamplerOptions("ddpm", 2, composition=CompositionOptions((2, 3), (1.0, 1.0)))
    assert generate(model, plain, SCHEDULE, [None], product, "cpu").images().isfinite().all()
    # A model with a null condition takes both.
    guided = ScoreModel(tiny_class_unet(5)).eval()
    null = ClassConditioning(4, null_class=True)
    assert generate(guided, null, SCHEDULE, [None], negated, "cpu").images().isfinite().all()


def test_pipeline_refuses_guidance_on_a_model_trained_without_cfg(tmp_path):
    pipe = ContinualDiffusionPipeline.from_pretrained(_export(tmp_path, cfg=False))
    pipe.set_progress_bar_config(disable=True)
    with pytest.raises(UserInputError, match="guidance_scale 3 needs a model trained with classifier-free"):
        pipe(class_labels=[0], guidance_scale=3, num_inference_steps=2, generator=0)
    with pytest.raises(UserInputError, match="negation needs the null condition"):
        pipe(composition={2: 3, 3: -1}, num_inference_steps=2, generator=0)
    default = pipe(class_labels=[0], num_inference_steps=2, generator=0, output_type="pt").images
    explicit = pipe(class_labels=[0], guidance_scale=1, num_inference_steps=2, generator=0, output_type="pt").images
    assert torch.equal(default, explicit)  # left out: the model's own (no guidance)


def test_evaluate_refuses_a_given_guidance_on_a_model_trained_without_cfg(tmp_path, capsys):
    plain = _export(tmp_path, cfg=False)
    out = tmp_path / "eval"
    argv = ["--model_path", plain, "--output_dir", str(out), "--num_inference_steps", "2", "--num_samples", "1"]
    line = _one_error_line(capsys, evaluate.main([*argv, "--guidance_scale", "5"]))
    assert "--guidance_scale 5 needs a model trained with classifier-free guidance" in line and not out.exists()
    assert evaluate.main([*argv, "--no_progress"]) == 0  # the default is the model's own: no guidance
    cfg = _export(tmp_path, cfg=True)
    assert evaluate.main(["--model_path", cfg, "--output_dir", str(tmp_path / "e2"), "--num_inference_steps", "2",
                          "--num_samples", "1", "--no_progress"]) == 0  # fmt: skip
    assert '"guidance_scale": 2.0' in (tmp_path / "e2" / "run.json").read_text()


def test_training_refuses_guidance_without_cfg_before_writing(tmp_path, capsys):
    data = tmp_path / "tasks.npz"
    save_tasks(str(data), make_tasks("class"))
    out = tmp_path / "run"
    argv = [*TINY_FLAGS, "--data_path", str(data), "--output_dir", str(out), "--max_train_steps", "1"]
    line = _one_error_line(capsys, main_ddpm.main([*argv, "--guidance_scale", "5"]))
    assert "--guidance_scale 5 needs a model trained with classifier-free guidance" in line and not out.exists()


def test_the_evaluation_report_refuses_a_given_guidance_before_training_its_oracle(tmp_path, capsys):
    from continual_diffusers.evaluation.__main__ import main as report

    run = tmp_path / "plain"
    _export(tmp_path, cfg=False)
    code = report(["report", "--run_dir", str(run), "--guidance_scale", "5", "--num_inference_steps", "2"])
    assert "--guidance_scale 5 needs a model trained with classifier-free guidance" in _one_error_line(capsys, code)
    assert sorted(p.name for p in run.iterdir()) == ["task_2"]  # no oracle/, no report/
