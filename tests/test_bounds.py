"""utils/bounds.py and the library boundary: the same bounds for a notebook user as for the command line."""

from __future__ import annotations

import argparse

import pytest

from continual_diffusers.sampling.annealed import MCMCOptions
from continual_diffusers.sampling.generate import CompositionOptions, SamplerOptions, generate
from continual_diffusers.sampling.mcmc import KernelParams
from continual_diffusers.utils import bounds as b
from continual_diffusers.utils.errors import UserInputError


@pytest.mark.parametrize(
    "bounds, value, ok",
    [
        (b.RESOLUTION, 4096, True),
        (b.RESOLUTION, 4097, False),
        (b.RESOLUTION, 8.0, False),  # a float where an int is expected (a JSON file)
        (b.RESOLUTION, True, False),
        (b.RESOLUTION, "8", False),
        (b.POSITIVE, 1e-30, True),
        (b.POSITIVE, 0.0, False),
        (b.POSITIVE, float("inf"), False),
        (b.NON_NEGATIVE, float("nan"), False),
        (b.PROBABILITY, 1.0, False),
        (b.DECAY, 1, True),  # an int is a fine float
        (b.FINITE, -1e300, True),
    ],
)
def test_contains(bounds, value, ok):
    assert bounds.contains(value) is ok


def test_messages_state_the_bounds():
    assert b.RESOLUTION.describe() == ">= 1 and <= 4096"
    assert b.PROBABILITY.describe() == "in [0, 1)"
    assert b.POSITIVE.describe() == "> 0 and finite"
    with pytest.raises(UserInputError, match=r"^--x must be >= 0 and finite, got nan$"):
        b.NON_NEGATIVE.check("--x", float("nan"))


def test_parser_checks_after_parsing_with_the_flag_name():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", "--norm", dest="norm", type=b.POSITIVE, default=1.0)
    parser.add_argument("--sizes", type=b.CHANNELS, nargs="+")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("go").add_argument("--seed", type=b.SEED)
    b.check_parsed(parser, parser.parse_args(["--sizes", "8", "16", "--clip", "2", "go", "--seed", "3"]))
    with pytest.raises(UserInputError, match="^--norm must be > 0"):
        b.check_parsed(parser, parser.parse_args(["--clip", "inf"]))
    with pytest.raises(UserInputError, match="^--sizes must be >= 1 and <= 4096, got 0"):
        b.check_parsed(parser, parser.parse_args(["--sizes", "8", "0"]))
    with pytest.raises(UserInputError, match="^--seed must be >= 0"):  # the chosen sub-command's flags too
        b.check_parsed(parser, parser.parse_args(["go", "--seed", "-1"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--sizes", "1e3"])  # argparse: invalid int value


@pytest.mark.parametrize(
    "make",
    [
        lambda: MCMCOptions("ULA", step_size_multiplier=float("nan")),
        lambda: MCMCOptions("UHA", damping=float("nan")),
        lambda: MCMCOptions("ULA", start_timestep=float("inf")),
        lambda: KernelParams(float("nan")),
    ],
)
def test_mcmc_settings_refuse_non_finite_values(make):
    with pytest.raises(UserInputError, match="must be"):
        make()


@pytest.mark.parametrize(
    "options, message",
    [
        (SamplerOptions(guidance_scale=float("nan")), "guidance_scale must be >= 0 and finite, got nan"),
        (SamplerOptions(num_inference_steps=50), "num_inference_steps 50 exceeds the schedule's 10"),
        (SamplerOptions(batch_size=0), "batch_size must be >= 1"),
        (SamplerOptions(composition=CompositionOptions((0, 1), (1.0, float("inf")))), "composition weight must be"),
    ],
)
def test_generate_refuses_what_would_sample_black_images(options, message):
    from conftest import tiny_class_unet
    from diffusers import DDPMScheduler

    from continual_diffusers.models.conditioning import ClassConditioning
    from continual_diffusers.models.denoiser import ScoreModel

    model, conditioning = ScoreModel(tiny_class_unet(3)), ClassConditioning(2, null_class=True)
    with pytest.raises(UserInputError, match=message):
        generate(model, conditioning, DDPMScheduler(num_train_timesteps=10), [0], options, "cpu")


def test_sub_command_parsers_refuse_abbreviated_flags(capsys):
    """run_main turns prefixes off on every parser and sub-parser (here `python -m continual_diffusers.evaluation`)."""
    from continual_diffusers.evaluation.__main__ import main as evaluation_main

    with pytest.raises(SystemExit) as exit_:
        evaluation_main(["report", "--run_dir", "x", "--oracle_pat", "y"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "unrecognized arguments: --oracle_pat y" in err[0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train-oracle", "--output_dir", "x", "--seed", "-1"], "--seed must be >= 0"),
        (["train-oracle", "--output_dir", "x", "--resolution", "100000"], "--resolution must be >= 1 and <= 4096"),
        (["report", "--run_dir", "x", "--eval_num_samples", "1"], "--eval_num_samples must be >= 2"),
        (["report", "--run_dir", "x", "--sampling_batch_size", "0"], "--sampling_batch_size must be >= 1"),
    ],
)
def test_evaluation_tool_bounds_its_numbers(argv, message, tmp_path, capsys):
    """`python -m continual_diffusers.evaluation` checks its own numbers like every other entry point, before
    touching the run or output dir."""
    from continual_diffusers.evaluation.__main__ import main as evaluation_main

    argv = [str(tmp_path / a) if a == "x" else a for a in argv]
    assert evaluation_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not any(tmp_path.iterdir())
