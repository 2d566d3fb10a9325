"""Progress bars on long loops (sampling.generate.progress_bar): `generate` nests a per-timestep bar under its bar
over chunks, so a 1000-step sampler shows movement; EWC's Fisher, the generative-replay pool, end-of-task samples
and evaluation have bars of their own; bars show on the main process only, wait a few seconds in "auto" mode (so
short calls print nothing), and are closed when the loop raises."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
import torch
from diffusers import DDPMScheduler
from test_ewc import GaussianData, LinearDenoiser, _objective
from torch import nn
from tqdm.auto import tqdm

from continual_diffusers.config import SamplingConfig
from continual_diffusers.models.conditioning import ClassConditioning, Unconditional
from continual_diffusers.models.denoiser import DenoiserOutput
from continual_diffusers.models.spec import ModelSpec
from continual_diffusers.sampling.generate import SamplerOptions, generate, generate_samples
from continual_diffusers.strategies import estimate_fisher
from continual_diffusers.utils.progress import progress_bar
from continual_diffusers.utils.seed import make_generator

# The modules (the package's `generate` attribute is the function of that name).
generate_mod = importlib.import_module("continual_diffusers.sampling.generate")
ancestral = importlib.import_module("continual_diffusers.sampling.ancestral")
progress_mod = importlib.import_module("continual_diffusers.utils.progress")

TRAIN = DDPMScheduler(num_train_timesteps=1000)


class CountingModel(nn.Module):
    """ε̂ = 0 on (1, 4, 4) images, counting its calls: a 1000-step sampler in milliseconds."""

    def __init__(self):
        super().__init__()
        self.unet = SimpleNamespace(config=SimpleNamespace(in_channels=1, sample_size=4))
        self.calls = 0

    def forward(self, x, t, **cond):
        self.calls += 1
        return DenoiserOutput(torch.zeros_like(x), None)


class Recorded(tqdm):
    """tqdm that remembers every bar made (through the patched module names below)."""

    bars: list = []

    def __init__(self, *args, **kwargs):
        self.options = dict(kwargs)
        super().__init__(*args, **kwargs)
        self.shown = not self.disable  # close() sets disable
        Recorded.bars.append(self)

    def close(self):
        self.was_closed = True
        super().close()


@pytest.fixture
def bars(monkeypatch):
    Recorded.bars = []
    monkeypatch.setattr(progress_mod, "tqdm", Recorded)
    monkeypatch.setattr(ancestral, "tqdm", Recorded)
    monkeypatch.setattr(generate_mod, "is_main_process", lambda: True)
    monkeypatch.setattr(progress_mod, "is_main_process", lambda: True)
    return Recorded.bars


def _by_desc(bars, desc):
    return [b for b in bars if b.desc.startswith(desc)]


def test_a_1000_step_generate_shows_its_timesteps(bars, capsys, monkeypatch):
    monkeypatch.setattr(generate_mod, "PROGRESS_DELAY_S", 0.0)  # show at once (a real run waits a few seconds)
    monkeypatch.setattr(progress_mod, "PROGRESS_DELAY_S", 0.0)
    model = CountingModel()
    options = SamplerOptions("ddpm", 1000, batch_size=2, progress=True)
    generate(model, Unconditional(), TRAIN, [None] * 3, options, "cpu", desc="eval task 1")
    (chunks,) = _by_desc(bars, "eval task 1")
    steps = _by_desc(bars, "timesteps")
    assert chunks.total == 2 and chunks.n == 2 and chunks.shown and chunks.options["delay"] == 0.0
    assert len(steps) == 2 and all(b.total == 1000 and b.n == 1000 and b.shown for b in steps)
    assert all(b.options["leave"] is False for b in steps)  # nested: it disappears after each chunk
    assert all(b.was_closed for b in bars) and model.calls == 2000
    err = capsys.readouterr().err
    assert "eval task 1" in err and "timesteps" in err and "/1000" in err


def test_auto_progress_waits_so_short_calls_print_nothing(bars, capsys):
    generate_samples(CountingModel(), Unconditional(), TRAIN, [None] * 2, SamplerOptions("ddpm", 5), "cpu")
    assert SamplerOptions().progress is None  # auto is the default
    (chunks,) = _by_desc(bars, "batches")
    (steps,) = _by_desc(bars, "timesteps")
    assert chunks.shown and chunks.options["delay"] == generate_mod.PROGRESS_DELAY_S > 0
    assert steps.shown and steps.options["delay"] == generate_mod.PROGRESS_DELAY_S
    assert capsys.readouterr().err == ""


def test_progress_false_and_other_processes_show_no_bar(bars, capsys, monkeypatch):
    generate_samples(CountingModel(), Unconditional(), TRAIN, [None], SamplerOptions("ddpm", 5, progress=False), "cpu")
    assert bars and not any(b.shown for b in bars)
    bars.clear()
    monkeypatch.setattr(generate_mod, "is_main_process", lambda: False)
    monkeypatch.setattr(progress_mod, "is_main_process", lambda: False)
    generate_samples(CountingModel(), Unconditional(), TRAIN, [None], SamplerOptions("ddpm", 5, progress=True), "cpu")
    assert bars and not any(b.shown for b in bars)
    assert capsys.readouterr().err == ""


def test_main_process_without_an_accelerator_follows_local_rank(monkeypatch):
    from accelerate import PartialState

    monkeypatch.setattr(PartialState, "_shared_state", {})  # no Accelerator in this process (restored after)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not progress_mod.is_main_process()
    assert progress_bar(range(3), desc="x", progress=True).disable
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert progress_mod.is_main_process()
    monkeypatch.delenv("LOCAL_RANK")
    assert progress_mod.is_main_process()


def test_bars_are_closed_when_sampling_raises(bars, monkeypatch):
    class Failing(CountingModel):
        def forward(self, x, t, **cond):
            if self.calls == 3:
                raise RuntimeError("boom")
            return super().forward(x, t, **cond)

    monkeypatch.setattr(generate_mod, "PROGRESS_DELAY_S", 0.0)
    options = SamplerOptions("ddpm", 10, batch_size=1, progress=True)
    with pytest.raises(RuntimeError, match="boom"):
        generate(Failing(), Unconditional(), TRAIN, [None] * 2, options, "cpu")
    assert len(bars) == 2 and all(b.was_closed for b in bars)
    assert not [b for b in getattr(tqdm, "_instances", ()) if b in bars]  # none left open for entrypoint to close


def test_ewc_fisher_counts_its_samples(monkeypatch, capsys):
    import continual_diffusers.strategies.ewc as ewc

    made = []

    def recording_bar(*args, **kwargs):
        bar = generate_mod.progress_bar(*args, **kwargs)
        made.append(bar)
        return bar

    monkeypatch.setattr(ewc, "progress_bar", recording_bar)
    monkeypatch.setattr(generate_mod, "is_main_process", lambda: True)
    monkeypatch.setattr(progress_mod, "is_main_process", lambda: True)
    objective, model = _objective(), LinearDenoiser(4)
    args = (model, GaussianData(), objective, lambda batch, device: {}, torch.device("cpu"), make_generator(0))
    estimate_fisher(*args, num_samples=10, num_timesteps=1, batch_size=3, progress=True)
    (bar,) = made
    assert bar.desc == "EWC Fisher" and bar.total == 10 and bar.n == 10
    assert "EWC Fisher" in capsys.readouterr().err


def test_generative_replay_pool_has_a_bar_and_on_the_fly_replays_none(bars, tiny_replay):
    strategy, model = tiny_replay
    strategy.before_task(model, 2)  # draws the pool
    (pool,) = _by_desc(bars, "replay pool (task 2)")
    assert pool.options["delay"] == generate_mod.PROGRESS_DELAY_S and pool.shown
    bars.clear()
    strategy.pool_size, strategy._pool = 0, None
    strategy.replay_batch(4, make_generator(0))
    assert bars and not any(b.shown for b in bars)


@pytest.fixture
def tiny_replay():
    from continual_diffusers.strategies.generative_replay import GenerativeReplay

    model = CountingModel()
    model.weight = nn.Parameter(torch.zeros(1))  # the teacher's device comes from its parameters
    strategy = GenerativeReplay(Unconditional(), TRAIN, num_inference_steps=3, pool_size=4)
    strategy._seen = True
    return strategy, model


def test_validation_grid_and_evaluation_label_their_bars(bars, tmp_path, monkeypatch):
    from continual_diffusers.evaluation import evaluator as evaluator_mod
    from continual_diffusers.training.train_config import TrainConfig
    from continual_diffusers.training.validation import ValidationSampler

    cfg = TrainConfig(output_dir=str(tmp_path), validation=SamplingConfig(num_inference_steps=3, num_samples=2))
    sampler = ValidationSampler(cfg, Unconditional(), TRAIN)
    sampler.save(CountingModel(), str(tmp_path / "task_3"), ModelSpec("none", 8, 3), [1], "cpu")
    (grid,) = _by_desc(bars, "samples task_3")
    assert grid.shown and grid.options["delay"] == generate_mod.PROGRESS_DELAY_S

    descs = []

    def recording(*args, desc="batches", **kwargs):
        descs.append(desc)
        raise StopIteration  # the labels are all this test wants

    monkeypatch.setattr(evaluator_mod, "generate_samples", recording)
    tasks = SimpleNamespace(label_kind="class")
    evaluator = evaluator_mod.ContinualEvaluator(nn.Identity(), 8, tasks, 2, SamplerOptions())
    for conditioning, seen in ((ClassConditioning(2, null_class=False), [1, 2]), (Unconditional(), [1, 2])):
        with pytest.raises(StopIteration):
            evaluator.evaluate(None, conditioning, TRAIN, seen, {"1": [0], "2": [1]}, "cpu")
    assert descs == ["eval task 1", "eval samples"]
