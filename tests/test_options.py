"""The typed configurations that generate the CLI (utils/options.py): a config built in Python refuses what the flag
refuses, with the same message; the parsers' defaults are the configs' defaults; a strategy registered with its
config gets its flags, its owned-option check and its place in config.json without any edit in cli/; evaluate.py
reads --config files."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pytest
from conftest import TINY_FLAGS

import evaluate
import main_ddpm
from continual_diffusers.cli.ldm import ldm_parser
from continual_diffusers.cli.training import ddpm_parser
from continual_diffusers.config import ModelConfig, ObjectiveConfig, SamplingConfig
from continual_diffusers.strategies import (
    STRATEGIES,
    EWCConfig,
    GenerativeReplayConfig,
    LoRAConfig,
    Naive,
    ReplayConfig,
    SIConfig,
    StrategyConfig,
)
from continual_diffusers.training.train_config import TrainConfig
from continual_diffusers.utils import bounds as b
from continual_diffusers.utils.entrypoint import run_main
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.options import flag_defaults, option, options_group


def _cli_error(argv, capsys) -> str:
    assert main_ddpm.main([*argv, "--dry_run"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line.removeprefix("error: ")


@pytest.mark.parametrize(
    "config, flag, value",
    [
        (ReplayConfig, "buffer_size", -1),
        (ReplayConfig, "replay_ratio", 1.0),
        (EWCConfig, "ewc_gamma", 0.0),
        (SIConfig, "si_epsilon", 0.0),
        (GenerativeReplayConfig, "gr_replay_ratio", 1.0),
        (TrainConfig, "learning_rate", 0.0),
        (ObjectiveConfig, "noise_offset", -0.5),
        (SamplingConfig, "num_inference_steps", 0),
    ],
)
def test_python_config_refuses_what_the_flag_refuses_with_the_same_message(config, flag, value, capsys):
    cli = _cli_error([f"--{flag}", str(value)], capsys)
    extra = {"output_dir": "x"} if config is TrainConfig else {}
    with pytest.raises(UserInputError) as err:
        config(**extra, **{flag: value})
    assert cli.startswith(f"--{flag} must be ")  # the command line names the flag, Python the field
    assert str(err.value) == cli.replace(f"--{flag}", f"{config.__name__}.{flag}", 1)


@pytest.mark.parametrize(
    "config, kwargs, argv",
    [
        (GenerativeReplayConfig, {"distillation_inputs": "noise"}, ["--distillation_inputs", "noise"]),
        (ReplayConfig, {"buffer_type": "all_data", "retain_label_uniform_sampling": True},
         ["--buffer_type", "all_data", "--retain_label_uniform_sampling"]),
        (ObjectiveConfig, {"energy_based_training": True, "prediction_type": "sample"},
         ["--energy_based_training", "--prediction_type", "sample"]),
        (SamplingConfig, {"ddim_eta": 0.5}, ["--ddim_eta", "0.5"]),
        (ModelConfig, {"conditioning": "none", "num_class_labels": 3},
         ["--conditioning", "none", "--num_class_labels", "3"]),
    ],
)  # fmt: skip
def test_values_that_cannot_go_together_are_refused_alike(config, kwargs, argv, capsys):
    if config is GenerativeReplayConfig:
        argv = ["--strategy", "generative_replay", *argv]
    with pytest.raises(UserInputError) as err:
        config(**kwargs)
    assert str(err.value) == _cli_error(argv, capsys)


def test_choices_and_types_are_checked_in_python():
    with pytest.raises(UserInputError, match=r"ReplayConfig.buffer_type must be one of \['no_data'"):
        ReplayConfig(buffer_type="fifo")
    with pytest.raises(UserInputError, match="EWCConfig.num_samples_ewc must be >= 1 and <= 1000000, got 2.5"):
        EWCConfig(num_samples_ewc=2.5)
    with pytest.raises(UserInputError, match="LoRAConfig.lora_target_modules must be a non-empty list"):
        LoRAConfig(lora_rank=4, lora_target_modules=[])
    with pytest.raises(UserInputError, match="--lora_alpha is set but LoRA is off"):
        LoRAConfig(lora_alpha=8.0)


@pytest.mark.parametrize("parser", [ddpm_parser, ldm_parser])
def test_parser_defaults_are_the_configs_defaults(parser):
    """One place for a default: the dataclass field (main_ldm overrides the objective's schedule and output dir)."""
    actions = {a.dest: a for a in parser()._actions}
    ldm_overrides = {"ddpm_num_steps", "ddpm_beta_schedule", "output_dir"} if parser is ldm_parser else set()
    configs = [ReplayConfig, EWCConfig, SIConfig, GenerativeReplayConfig, TrainConfig, SamplingConfig, ObjectiveConfig]
    for config in configs:
        for name, default in flag_defaults(config).items():
            if name not in ldm_overrides:
                assert actions[name].default == default, name


# ------------------------------------------------------------------------------------------------ a new strategy
@options_group("Toy", "a strategy defined outside the package")
@dataclass
class ToyConfig(StrategyConfig):
    name = "toy"

    toy_strength: float = option(1.0, bounds=b.NON_NEGATIVE, help="how much toy")

    def build(self, context):
        return ToyStrategy(self.toy_strength)


class ToyStrategy(Naive):
    name = "toy"
    config = ToyConfig

    def __init__(self, strength: float):
        self.strength = strength


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(STRATEGIES, "toy", ToyStrategy)  # the one registry line


def test_a_registered_strategy_gets_its_flags_checks_and_config_entry(toy_registered, task_file, capsys):
    help_text = " ".join(ddpm_parser().format_help().split())
    assert "--toy_strength TOY_STRENGTH how much toy (default: 1.0) [>= 0 and finite]" in help_text
    assert (
        _cli_error(["--toy_strength", "2"], capsys)
        == "--toy_strength is set but toy is off (enable it with --strategy toy)"
    )
    assert _cli_error(["--strategy", "toy", "--toy_strength", "-1"], capsys).startswith("--toy_strength must be >= 0")
    argv = ["--data_path", task_file(), *TINY_FLAGS, "--strategy", "toy", "ewc", "--toy_strength", "3", "--dry_run"]
    assert main_ddpm.main(argv) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["args"]["toy_strength"] == 3.0
    assert resolved["config"]["strategies"] == {"ewc": dataclasses.asdict(EWCConfig()), "toy": {"toy_strength": 3.0}}


def test_run_config_records_the_resolved_configuration(task_file, capsys):
    argv = ["--data_path", task_file(), *TINY_FLAGS, "--buffer_type", "reservoir", "--use_ema", "--dry_run"]
    assert main_ddpm.main(argv) == 0
    config = json.loads(capsys.readouterr().out)["config"]
    assert config["strategies"]["replay"]["buffer_type"] == "reservoir" and "ewc" not in config["strategies"]
    assert config["train"]["ema_scope"] == "task" and config["train"]["use_ema"] is True  # unset: the default scope
    assert config["model"]["block_out_channels"] == [8, 16] and config["objective"]["ddpm_num_steps"] == 10


# ------------------------------------------------------------------------------------------------ evaluate --config
def _evaluate_parsed(argv):
    seen = []
    code = run_main(evaluate.parser(), seen.append, [str(a) for a in argv])
    return seen[0] if code == 0 else code


def test_evaluate_reads_its_flags_from_a_config_file(tmp_path, capsys):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"model_path": "outputs/run/task_2", "guidance_scale": 3, "class_labels": [0, 1]}))
    args = _evaluate_parsed(["--config", path, "--num_samples", "2"])
    assert args.model_path == "outputs/run/task_2" and args.guidance_scale == 3.0 and args.class_labels == [0, 1]
    assert args.num_samples == 2 and args.progress is True
    path.write_text(json.dumps({"model_path": "m", "guidance_scal": 3}))
    assert _evaluate_parsed(["--config", path]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "unknown key 'guidance_scal' (did you mean 'guidance_scale'?)" in line
