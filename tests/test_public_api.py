"""The public Python API: the README's "Python API" example runs, every exported name imports, a `train_task` loop
is `fit` bit for bit (also one `fit` per task, and a resume), misuse and a UNet without CFG's null class are
refused with `UserInputError`, and `TrainConfig`'s defaults are the CLI's."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import make_tasks
from safetensors.torch import load_file

import continual_diffusers as cd
from continual_diffusers import (
    ClassConditioning,
    ContinualTrainer,
    DenoisingObjective,
    ImageTransform,
    Replay,
    ReplayBuffer,
    TaskBalanced,
    TrainConfig,
    UNetSpec,
    UserInputError,
    build_unet,
    make_denoiser,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBPACKAGES = ("data", "models", "objectives", "strategies", "sampling", "training", "evaluation", "utils")


def readme_example() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the README's Python API section has no python code block"
    return blocks[0]


def test_readme_python_api_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example writes outputs/python_api/
    exec(compile(readme_example(), "README.md (Python API)", "exec"), {"__name__": "readme_example"})
    for task_id in (1, 2):
        assert os.path.isfile(tmp_path / "outputs" / "python_api" / f"task_{task_id}" / "samples.png")
    assert not os.path.exists(tmp_path / "outputs" / "python_api" / "task_3")


def test_every_public_name_imports():
    assert cd.__version__
    missing = [name for name in cd.__all__ if getattr(cd, name, None) is None]
    assert not missing
    for package in SUBPACKAGES:
        module = __import__(f"continual_diffusers.{package}", fromlist=["__all__"])
        assert module.__all__, package
        assert [name for name in module.__all__ if not hasattr(module, name)] == [], package
    from continual_diffusers.training import ContinualTrainer as Trainer

    assert Trainer is ContinualTrainer and callable(Trainer.build) and callable(Trainer.train_task)
    with pytest.raises(AttributeError):
        cd.no_such_name  # noqa: B018


def test_import_is_cheap():
    """The package docstring promises that nothing happens on import: no torch, no sub-package."""
    code = (
        "import sys, continual_diffusers\n"
        "print(sorted(m for m in sys.modules if m.startswith(('torch', 'continual_diffusers.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_train_config_defaults_are_the_cli_defaults():
    from continual_diffusers import cli

    args = cli.ddpm_parser().parse_args([])
    assert cli.train_config(args) == TrainConfig(output_dir=args.output_dir)
    assert TrainConfig(output_dir="x").num_epochs == args.num_epochs == 50
    assert TrainConfig(output_dir="x").validation.guidance_scale is args.guidance_scale is None  # the model's own


def test_train_config_checks_its_values():
    with pytest.raises(UserInputError, match="TrainConfig.learning_rate"):
        TrainConfig(output_dir="x", learning_rate=0.0)
    with pytest.raises(UserInputError, match="TrainConfig.lr_scheduler"):
        TrainConfig(output_dir="x", lr_scheduler="cosine_annealing")
    with pytest.raises(UserInputError, match="TrainConfig.uncond_p"):
        TrainConfig(output_dir="x", uncond_p=1.0)
    assert TrainConfig(output_dir="x", max_train_steps=None, checkpointing_steps=None).checkpointing_steps is None


# ------------------------------------------------------------------------------------ a tiny class-conditional run
TASKS = make_tasks("class", num_tasks=2, per_task=8)  # task 1: classes 0, 1; task 2: classes 2, 3


def tiny_unet(null_class: bool = True):
    torch.manual_seed(0)
    spec = UNetSpec(
        resolution=8, in_channels=3, conditioning="class", num_classes=4, null_class=null_class,
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, attention=False,
    )  # fmt: skip
    return build_unet(spec)


def tiny_config(output_dir, **overrides) -> TrainConfig:
    values = dict(
        output_dir=str(output_dir), seed=0, train_batch_size=4, max_train_steps=3, uncond_p=0.2,
        checkpointing_steps=2, validation=cd.SamplingConfig(num_inference_steps=2, num_samples=1), learning_rate=1e-3,
    )  # fmt: skip
    return TrainConfig(**{**values, **overrides})


def build_tiny(output_dir, **cfg_overrides) -> ContinualTrainer:
    from diffusers import DDPMScheduler

    replay = Replay(ReplayBuffer(TaskBalanced(6)), ImageTransform(8), {t.task_id: len(t) for t in TASKS})
    return ContinualTrainer.build(
        TASKS,
        tiny_config(output_dir, **cfg_overrides),
        model=tiny_unet(),
        conditioning=ClassConditioning(4, null_class=True),
        strategy=replay,
        objective=DenoisingObjective(DDPMScheduler(num_train_timesteps=10), "epsilon"),
    )


def run_files(output_dir) -> dict[str, bytes]:
    """Every file the run wrote (exports, samples, checkpoints), by relative path."""
    files = {}
    for folder, _, names in os.walk(output_dir):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                files[os.path.relpath(path, output_dir)] = fh.read()
    return files


def assert_same_run(a: ContinualTrainer, b: ContinualTrainer) -> None:
    assert a.position == b.position
    state_a, state_b = a.model.unet.state_dict(), b.model.unet.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    export_a = load_file(os.path.join(a.cfg.output_dir, "task_2", "unet", "diffusion_pytorch_model.safetensors"))
    export_b = load_file(os.path.join(b.cfg.output_dir, "task_2", "unet", "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(export_a[k], export_b[k]) for k in export_a)
    files_a, files_b = run_files(a.cfg.output_dir), run_files(b.cfg.output_dir)
    files_a.pop("config.json"), files_b.pop("config.json")  # names the output folder
    assert files_a.keys() == files_b.keys()
    assert [k for k in files_a if files_a[k] != files_b[k]] == []


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    trainer = build_tiny(tmp_path_factory.mktemp("fit"))
    trainer.fit(TASKS)
    return trainer


@pytest.fixture(scope="module")
def looped(tmp_path_factory):
    trainer = build_tiny(tmp_path_factory.mktemp("loop"))
    for task in TASKS:
        trainer.train_task(task)
    return trainer


def test_train_task_loop_equals_fit_bit_for_bit(fitted, looped):
    assert looped.position.seen_tasks == fitted.position.seen_tasks == [1, 2]
    assert {"task_1", "task_2", "checkpoint-2", "checkpoint-6"} <= set(os.listdir(looped.cfg.output_dir))
    assert_same_run(fitted, looped)


def test_one_fit_per_task_equals_fit(fitted, tmp_path):
    trainer = build_tiny(tmp_path)
    for task in TASKS:
        trainer.fit([task])  # used to skip task 2 silently
    assert_same_run(fitted, trainer)


def test_train_task_resumes_a_checkpoint_mid_task(fitted, tmp_path):
    """checkpoint-2 stopped after step 2 of task 1's 3: restore it, then train task 1 (its last step) and task 2."""
    run = tmp_path / "run"
    trainer = build_tiny(run)
    trainer.train_task(TASKS[1])  # writes checkpoint-2 (mid-task) and checkpoint-3 (task end)
    resumed = build_tiny(run)
    resumed.restore(os.path.join(run, "checkpoint-2"), TASKS)
    with pytest.raises(UserInputError, match="middle of task 1"):
        resumed.train_task(TASKS[2])
    resumed.train_task(TASKS[1])
    resumed.train_task(TASKS[2])
    assert resumed.position == fitted.position
    state, reference = resumed.model.unet.state_dict(), fitted.model.unet.state_dict()
    assert all(torch.equal(state[k], reference[k]) for k in reference)


def test_training_a_task_twice_is_refused(looped):
    before = looped.position
    for task in TASKS:
        with pytest.raises(UserInputError, match=f"task {task.task_id} was trained already"):
            looped.train_task(task)
    assert looped.position == before


def test_training_out_of_order_is_refused(tmp_path):
    trainer = build_tiny(tmp_path)
    trainer.train_task(TASKS[2])
    with pytest.raises(UserInputError, match="increasing task id order"):
        trainer.train_task(TASKS[1])
    with pytest.raises(UserInputError, match="increasing task id order"):
        trainer.fit(TASKS)  # task 1 is not trained and comes before task 2
    assert trainer.position.seen_tasks == [2]


# ---------------------------------------------------------------------------------------------- construction checks
def build_objective_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=10)


def test_cfg_without_the_unets_null_class_is_a_user_input_error(tmp_path):
    """CFG dropout maps labels to the null class index 4, which a UNet with 4 class rows does not have: this used to
    be a bare IndexError at the first training step."""
    cfg = tiny_config(tmp_path / "run", uncond_p=0.1)
    conditioning = ClassConditioning(4, null_class=True)
    with pytest.raises(UserInputError, match="null_class=True") as err:
        ContinualTrainer.build(TASKS, cfg, model=tiny_unet(null_class=False), conditioning=conditioning)
    assert "num_class_embeds=4" in str(err.value)
    assert not os.path.exists(tmp_path / "run")  # refused before anything was written

    from accelerate import Accelerator

    with pytest.raises(UserInputError, match="num_class_embeds"):  # a trainer assembled by hand is checked too
        ContinualTrainer(
            Accelerator(), make_denoiser(tiny_unet(null_class=False), None), conditioning,
            DenoisingObjective(build_objective_scheduler(), "epsilon"), cd.Naive(), cfg, lambda task: None, {},
        )  # fmt: skip


def test_other_mismatches_are_user_input_errors(tmp_path):
    cfg = tiny_config(tmp_path / "run")
    no_null = ClassConditioning(4, null_class=False)
    with pytest.raises(UserInputError, match="uncond_p"):  # CFG dropout needs a null class
        ContinualTrainer.build(TASKS, cfg, model=tiny_unet(null_class=False), conditioning=no_null)
    with pytest.raises(UserInputError, match="num_classes=3"):  # the data has class 3
        ContinualTrainer.build(TASKS, cfg, model=tiny_unet(), conditioning=ClassConditioning(3, null_class=True))
    with pytest.raises(UserInputError, match="class embeddings but the conditioning is 'none'"):
        ContinualTrainer.build(TASKS, cfg, model=tiny_unet())
    with pytest.raises(UserInputError, match="model must be"):
        ContinualTrainer.build(TASKS, cfg, model=torch.nn.Linear(2, 2))
    from diffusers import DDPMScheduler

    v_objective_eps_scheduler = DenoisingObjective(DDPMScheduler(num_train_timesteps=10), "v_prediction")
    with pytest.raises(UserInputError, match="scheduler's config says 'epsilon'"):  # samplers would read ε
        ContinualTrainer.build(
            TASKS, cfg, model=tiny_unet(), conditioning=ClassConditioning(4, True), objective=v_objective_eps_scheduler
        )
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("energy", [False, True])
def test_default_objective_is_v_for_score_and_epsilon_for_energy_models(tmp_path, energy):
    """The CLI's default (`--prediction_type` unset), with a scheduler that agrees for the samplers."""
    model = make_denoiser(tiny_unet(), "dae" if energy else None)
    trainer = ContinualTrainer.build(
        TASKS, tiny_config(tmp_path / "run"), model=model, conditioning=ClassConditioning(4, null_class=True)
    )
    expected = "epsilon" if energy else "v_prediction"
    assert trainer.objective.prediction_type == expected == cd.default_prediction_type(energy)
    assert trainer.objective.scheduler.config.prediction_type == expected
    assert trainer.spec.prediction_type == expected


def test_task_sequence_is_indexed_by_task_id():
    assert TASKS[1].task_id == 1 and [task.task_id for task in TASKS] == [1, 2]
    with pytest.raises(KeyError, match="valid task ids"):
        TASKS[0]  # noqa: B018
