"""`ContinualDiffusionPipeline` over tiny trained exports: from_pretrained, the same images as evaluate.py with the
same seed (unconditional, class CFG, composition, energy-dae with MALA), stock DDPMPipeline for unconditional score
exports, the EMA layout (unet/ = inference weights) and older exports (unet/ + unet_ema/)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY_FLAGS, make_tasks
from safetensors.torch import load_file

import evaluate
import main_ddpm
from continual_diffusers import ContinualDiffusionPipeline, UserInputError
from continual_diffusers.data import save_tasks
from continual_diffusers.models.denoiser import EnergyModel, ScoreModel
from continual_diffusers.pipelines.loading import load_task_model
from continual_diffusers.sampling.annealed import MCMCOptions

STEPS = 4
RUNS = {
    "uncond": ("none", ["--use_ema"]),
    "class_cfg": ("class", ["--classifier_free_guidance"]),
    "energy": ("class", ["--energy_based_training", "--energy_score_type", "dae", "--classifier_free_guidance"]),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    out = {}
    for name, (kind, flags) in RUNS.items():
        data = root / f"tasks_{kind}.npz"
        if not data.exists():
            save_tasks(str(data), make_tasks(kind))
        argv = ["--data_path", data, "--output_dir", root / name, "--max_train_steps", 2, "--checkpointing_steps", 0]
        assert main_ddpm.main([str(a) for a in [*argv, *TINY_FLAGS, *flags]]) == 0
        out[name] = root / name
    return out


def _evaluate(task_dir, out, monkeypatch, *flags) -> tuple[torch.Tensor, dict]:
    """evaluate.py's images (the float tensor it writes, [-1, 1]) and its run.json."""
    import continual_diffusers.evaluation.generate as writer

    captured = {}
    real = writer.write_samples

    def spy(output_dir, images, labels, per_row, spec=None):
        captured["images"] = images.clone()
        real(output_dir, images, labels, per_row, spec)

    monkeypatch.setattr(writer, "write_samples", spy)
    argv = ["--model_path", task_dir, "--output_dir", out, "--no_progress", "--num_inference_steps", STEPS, *flags]
    assert evaluate.main([str(a) for a in argv]) == 0
    assert (out / "samples.npz").is_file()
    return captured["images"], json.loads((out / "run.json").read_text())


def _pipe(task_dir):
    """The pipeline, called with STEPS sampling steps unless told otherwise (the tiny schedule has T = 10)."""
    pipe = ContinualDiffusionPipeline.from_pretrained(task_dir)
    pipe.set_progress_bar_config(disable=True)
    return _Steps(pipe)


class _Steps:
    def __init__(self, pipe):
        self.pipe = pipe

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, *args, **kwargs):
        return self.pipe(*args, **{"num_inference_steps": STEPS, **kwargs})


def _same(pipe_images: torch.Tensor, eval_images: torch.Tensor) -> None:
    assert torch.equal(pipe_images, (eval_images / 2 + 0.5).clamp(0, 1))


def test_every_pixel_export_names_the_pipeline(runs):
    for name, run in runs.items():
        for task in ("task_1", "task_2"):
            index = json.loads((run / task / "model_index.json").read_text())
            ours = ["pipeline", "ContinualDiffusionPipeline"]  # diffusers' custom-pipeline form: pipeline.py
            assert index["_class_name"] == ("DDPMPipeline" if name == "uncond" else ours)
            assert (run / task / "pipeline.py").is_file() == (name != "uncond")
            assert index["unet"] == ["diffusers", "UNet2DModel"] and index["scheduler"][1] == "DDPMScheduler"


@pytest.fixture
def modules_cache(tmp_path, monkeypatch):
    """diffusers copies a folder's pipeline.py into its modules cache before importing it: a temporary one."""
    import diffusers.utils.dynamic_modules_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    monkeypatch.syspath_prepend(str(tmp_path / "hf_modules"))
    return tmp_path / "hf_modules"


@pytest.mark.parametrize("name", ["class_cfg", "energy"])
def test_stock_diffusion_pipeline_loads_class_cfg_and_energy_exports(runs, name, modules_cache):
    """`DiffusionPipeline.from_pretrained(task_dir, trust_remote_code=True)` builds our pipeline with the export's
    spec (CFG, energy) and samples what `ContinualDiffusionPipeline.from_pretrained` samples; without
    trust_remote_code diffusers refuses to run the folder's pipeline.py."""
    from diffusers import DiffusionPipeline

    task = runs[name] / "task_2"
    with pytest.raises(ValueError, match="pipeline.py"):
        DiffusionPipeline.from_pretrained(task)
    stock = DiffusionPipeline.from_pretrained(task, trust_remote_code=True)
    ours = ContinualDiffusionPipeline.from_pretrained(task)
    assert type(stock) is ContinualDiffusionPipeline and stock.spec == ours.spec
    assert stock.spec.classifier_free_guidance and (stock.spec.energy_type == "dae") == (name == "energy")
    assert isinstance(stock.denoiser, EnergyModel if name == "energy" else ScoreModel)
    for pipe in (stock, ours):
        pipe.set_progress_bar_config(disable=True)
    call = dict(class_labels=[0, 3], guidance_scale=3, generator=5, output_type="pt", num_inference_steps=STEPS)
    assert torch.equal(stock(**call).images, ours(**call).images)


def test_stock_diffusion_pipeline_loads_an_unconditional_export_as_ddpm(runs):
    from diffusers import DDPMPipeline, DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(runs["uncond"] / "task_2")
    assert type(pipe) is DDPMPipeline
    pipe.set_progress_bar_config(disable=True)
    assert pipe(batch_size=1, num_inference_steps=2, output_type="np").images.shape == (1, 8, 8, 3)


def test_our_loaders_never_run_the_exports_pipeline_py(runs, tmp_path, monkeypatch):
    """pipeline.py is code: only diffusers with trust_remote_code=True runs it; our loaders read the checked
    continual_diffusers.json and component folders."""
    task = tmp_path / "task_2"
    shutil.copytree(runs["class_cfg"] / "task_2", task)
    marker = tmp_path / "ran"
    (task / "pipeline.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit('ran')\n")
    pipe = _pipe(task)
    assert pipe(class_labels=[1], generator=0, output_type="pt").images.shape == (1, 3, 8, 8)
    images, _ = _evaluate(task, tmp_path / "eval", monkeypatch, "--class_labels", 1, "--num_samples", 1)
    assert images.shape == (1, 3, 8, 8) and not marker.exists()


def test_the_model_cards_loading_snippet_runs(runs):
    """The Usage block of an export's model card, run as written on the export it describes."""
    card = (runs["class_cfg"] / "task_2" / "README.md").read_text()
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert '"path/to/this/folder"' in code
    code = code.replace('"path/to/this/folder"', repr(str(runs["class_cfg"] / "task_2")))
    code = code.replace("generator=0)", "generator=0, num_inference_steps=2)")
    namespace = {}
    exec(compile(code, "model card", "exec"), namespace)
    assert "class_labels=[0, 1]" in code and len(namespace["images"]) == 2 * 4  # 4 images of classes 0 and 1


def test_unconditional_matches_evaluate_and_stock_ddpm_pipeline(runs, tmp_path, monkeypatch):
    from diffusers import DDPMPipeline

    from continual_diffusers.utils.seed import make_generator

    task = runs["uncond"] / "task_2"
    # The stock pipeline is strided ancestral DDPM: compare with our `ddpm` scheduler (not the default sampler).
    flags = ["--num_samples", 3, "--seed", 7, "--scheduler", "ddpm"]
    images, record = _evaluate(task, tmp_path / "eval", monkeypatch, *flags)
    pipe = _pipe(task)
    assert isinstance(pipe.denoiser, ScoreModel) and pipe.metadata["ema"] is True
    out = pipe(num_images_per_prompt=3, generator=7, output_type="pt", scheduler="ddpm")
    _same(out.images, images)
    assert out.labels == [None] * 3 and record["num_images"] == 3
    seeded = pipe(batch_size=3, generator=torch.Generator().manual_seed(7), output_type="pt", scheduler="ddpm").images
    assert torch.equal(seeded, out.images)  # a torch.Generator's seed is the evaluate.py seed
    # Stock diffusers: same UNet (the EMA weights), and with chunk 0's generator the very same images.
    stock = DDPMPipeline.from_pretrained(task)
    stock.set_progress_bar_config(disable=True)
    assert torch.equal(stock.unet.conv_in.weight, pipe.unet.conv_in.weight)
    generator = make_generator(7, "sampling", 0)
    ddpm = stock(batch_size=3, generator=generator, num_inference_steps=STEPS, output_type="np").images
    np.testing.assert_array_equal(ddpm, out.images.permute(0, 2, 3, 1).numpy())
    pil = pipe(generator=0, num_inference_steps=2).images
    assert len(pil) == 1 and pil[0].size == (8, 8)


def test_class_cfg_matches_evaluate(runs, tmp_path, monkeypatch):
    task = runs["class_cfg"] / "task_2"
    flags = ["--class_labels", 1, 2, "--num_samples", 2, "--guidance_scale", 3, "--seed", 3]
    flags += ["--sampling_batch_size", 3]
    images, record = _evaluate(task, tmp_path / "eval", monkeypatch, *flags)
    pipe = _pipe(task)
    out = pipe(class_labels=[1, 2], num_images_per_prompt=2, guidance_scale=3, generator=3, sampling_batch_size=3)
    assert out.labels == [1, 1, 2, 2] and record["guidance_scale"] == 3
    npz = np.load(tmp_path / "eval" / "samples.npz")["images"].astype(int)  # uint8; PIL rounds alike, ±1
    assert len(out.images) == 4 and np.abs(np.stack([np.asarray(im) for im in out.images]) - npz).max() <= 1
    kwargs = dict(class_labels=[1, 2], num_images_per_prompt=2, guidance_scale=3, generator=3, sampling_batch_size=3)
    pt = pipe(**kwargs, output_type="pt")
    _same(pt.images, images)
    # Default labels: every class seen so far (tasks 1 and 2 hold classes 0-3), as evaluate.py.
    assert pipe(generator=0, output_type="np", num_inference_steps=2).labels == [0, 1, 2, 3]
    unguided = pipe(**dict(kwargs, guidance_scale=1), output_type="pt")
    assert not torch.equal(unguided.images, pt.images)


def test_composition_matches_evaluate(runs, tmp_path, monkeypatch):
    task = runs["class_cfg"] / "task_2"
    flags = ["--composition_pipeline", "--composition_labels", "1,2", "--composition_weights=3,-1", "--num_samples", 2]
    images, record = _evaluate(task, tmp_path / "eval", monkeypatch, *flags, "--seed", 5)
    out = _pipe(task)(composition={1: 3.0, 2: -1.0}, num_images_per_prompt=2, generator=5, output_type="pt")
    _same(out.images, images)
    assert out.labels == ["+3*1 -1*2"] * 2 and record["composition"]["weights"] == [3.0, -1.0]


def test_energy_dae_with_mala_matches_evaluate(runs, tmp_path, monkeypatch):
    task = runs["energy"] / "task_2"
    flags = ["--class_labels", 0, "--num_samples", 2, "--mcmc_sampler", "MALA", "--mcmc_sampler_start_timestep", 0]
    flags += ["--scheduler", "ddpm"]  # MCMC moves x between steps: a one-step sampler
    images, record = _evaluate(task, tmp_path / "eval", monkeypatch, *flags, "--num_samples_per_step", 2, "--seed", 1)
    pipe = _pipe(task)
    assert isinstance(pipe.denoiser, EnergyModel) and pipe.denoiser.energy_type == "dae"
    mcmc = MCMCOptions("MALA", num_steps=2, start_timestep=0)
    out = pipe(class_labels=0, num_images_per_prompt=2, generator=1, mcmc=mcmc, output_type="pt", scheduler="ddpm")
    _same(out.images, images)
    assert {str(t): r for t, r in out.acceptance_rates.items()} == record["acceptance_rate_per_timestep"]
    assert out.num_mcmc_grad_evals == record["num_mcmc_grad_evals"] > 0
    mixture = pipe(composition=_mixture(), generator=1, output_type="pt", num_inference_steps=2)
    assert mixture.images.shape == (1, 3, 8, 8)


def _mixture():
    from continual_diffusers.sampling.generate import CompositionOptions

    return CompositionOptions((0, 1), (0.5, 0.5), "mixture")


def test_pipeline_refuses_what_the_model_cannot_run(runs):
    score, uncond = _pipe(runs["class_cfg"] / "task_2"), _pipe(runs["uncond"] / "task_2")
    with pytest.raises(UserInputError, match="needs an energy model|energy model"):
        score(class_labels=0, mcmc="MALA")
    with pytest.raises(UserInputError, match="dpm.._sde_logsnr is a multistep solver"):
        score(class_labels=0, mcmc="ULA")
    with pytest.raises(UserInputError, match="class_labels does not fit this unconditional model"):
        uncond(class_labels=[0])
    with pytest.raises(UserInputError, match=r"class_labels \[9\] out of range"):
        score(class_labels=[9])
    with pytest.raises(UserInputError, match="output_type"):
        uncond(output_type="latent", num_inference_steps=1)
    with pytest.raises(UserInputError, match="not an exported task model"):
        ContinualDiffusionPipeline.from_pretrained(runs["uncond"])  # the run dir, not a task_k/


def test_save_pretrained_round_trip(runs, tmp_path):
    pipe = _pipe(runs["energy"] / "task_2")
    pipe.save_pretrained(tmp_path / "copy")
    assert "slot_encoder" not in json.loads((tmp_path / "copy" / "model_index.json").read_text())
    again = _pipe(tmp_path / "copy")
    assert isinstance(again.denoiser, EnergyModel)
    a = pipe(class_labels=[0, 3], generator=2, output_type="pt", num_inference_steps=3).images
    b = again(class_labels=[0, 3], generator=2, output_type="pt", num_inference_steps=3).images
    assert torch.equal(a, b)


def test_ema_layout_and_older_exports(runs, tmp_path):
    """unet/ holds the EMA weights (inference), unet_training/ the training weights of the checkpoint; an export
    in the older layout (unet/ = training, unet_ema/ = EMA) loads the same weights for each choice."""
    task = runs["uncond"] / "task_2"
    trained = load_file(runs["uncond"] / "checkpoint-4" / "model.safetensors")
    training_export = load_file(task / "unet_training" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(trained[k], training_export[k]) for k in trained)
    ema_model = load_task_model(str(task))[0]
    training_model = load_task_model(str(task), use_ema=False)[0]
    assert torch.equal(ema_model.unet.conv_in.weight, load_task_model(str(task), use_ema=True)[0].unet.conv_in.weight)
    assert torch.equal(training_model.unet.conv_in.weight, trained["conv_in.weight"])
    assert not torch.equal(ema_model.unet.conv_in.weight, training_model.unet.conv_in.weight)
    old = tmp_path / "old"
    shutil.copytree(task, old)
    shutil.move(old / "unet", old / "unet_ema")
    shutil.move(old / "unet_training", old / "unet")
    meta = json.loads((old / "continual_diffusers.json").read_text())
    (old / "continual_diffusers.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "ema"}))
    for use_ema, want in ((None, ema_model), (True, ema_model), (False, training_model)):
        got = load_task_model(str(old), use_ema=use_ema)[0]
        assert torch.equal(got.unet.conv_in.weight, want.unet.conv_in.weight), use_ema
    # Without unet_training/ (the training weights removed) an EMA export still loads its EMA weights.
    shutil.rmtree(old)
    shutil.copytree(task, old)
    shutil.rmtree(old / "unet_training")
    assert torch.equal(load_task_model(str(old))[0].unet.conv_in.weight, ema_model.unet.conv_in.weight)
    with pytest.raises(UserInputError, match="training .non-EMA. weights are not in this export"):
        load_task_model(str(old), use_ema=False)
    with pytest.raises(UserInputError, match="trained without EMA"):
        load_task_model(str(runs["class_cfg"] / "task_2"), use_ema=True)


def test_text_model_with_negative_prompt_matches_evaluate(tmp_path, tiny_clip_dir, monkeypatch, modules_cache):
    data = tmp_path / "tasks_text.npz"
    save_tasks(str(data), make_tasks("text"))
    argv = ["--data_path", data, "--output_dir", tmp_path / "run", "--max_train_steps", 1, "--checkpointing_steps", 0]
    argv += ["--conditioning", "text", "--clip_text_pretrained_path", tiny_clip_dir, "--classifier_free_guidance"]
    argv += ["--uncond_p", 0.5, "--validation_prompts", "digit 0", *TINY_FLAGS]
    assert main_ddpm.main([str(a) for a in argv]) == 0
    task = tmp_path / "run" / "task_2"
    flags = ["--validation_prompts", "digit 1", "digit 2", "--negative_prompt", "digit 3", "--num_samples", 2]
    images, _ = _evaluate(task, tmp_path / "eval", monkeypatch, *flags, "--guidance_scale", 4, "--seed", 9)
    pipe = _pipe(task)
    assert json.loads((task / "model_index.json").read_text())["text_encoder"][0] == "transformers"
    kwargs = dict(prompt=["digit 1", "digit 2"], negative_prompt="digit 3", num_images_per_prompt=2, guidance_scale=4)
    out = pipe(**kwargs, generator=9, output_type="pt")
    _same(out.images, images)
    assert pipe(generator=0, output_type="np").labels == ["digit 0"]  # default: the run's validation prompts
    from diffusers import DiffusionPipeline  # stock loading builds the same pipeline (text encoder, tokenizer)

    stock = DiffusionPipeline.from_pretrained(task, trust_remote_code=True)
    stock.set_progress_bar_config(disable=True)
    assert torch.equal(stock(**kwargs, generator=9, output_type="pt", num_inference_steps=STEPS).images, out.images)


def test_a_pipeline_leaves_the_modes_of_the_modules_it_is_given():
    """Exports build a pipeline around the live training UNet to save it: building one (and sampling with it) must
    not leave that UNet in eval mode, or the next task trains in eval mode (a resumed run would not: it diverged
    from the uninterrupted one)."""
    from conftest import tiny_class_unet
    from diffusers import DDPMScheduler

    unet = tiny_class_unet(4).train()
    pipe = ContinualDiffusionPipeline(unet, DDPMScheduler(num_train_timesteps=10))
    assert unet.training
    pipe(class_labels=[0, 1], num_inference_steps=2, generator=0, output_type="pt")
    assert unet.training
