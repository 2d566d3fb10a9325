"""Every option of every command-line tool has a help text that shows its default, abbreviated flags are refused,
and `--config` reruns a run from its own config.json: bit-identical weights, command-line flags on top, every
value from the file checked like a flag."""

from __future__ import annotations

import argparse
import json

import pytest
import tiny_sd
import torch
from conftest import TINY_FLAGS
from safetensors.torch import load_file

import create_cifar10_data_example
import evaluate
import main_ddpm
import main_ldm
from continual_diffusers.cli.base import show_default
from continual_diffusers.cli.ldm import ldm_parser
from continual_diffusers.cli.training import ddpm_parser
from continual_diffusers.data.__main__ import build_parser as data_parser
from continual_diffusers.data.__main__ import main as data_main
from continual_diffusers.evaluation.__main__ import main as evaluation_main
from continual_diffusers.evaluation.__main__ import parser as evaluation_parser
from continual_diffusers.utils.entrypoint import run_main

tiny_sd_dir, caption_file = tiny_sd.tiny_sd_dir, tiny_sd.caption_file  # shared session fixtures

PARSERS = {
    "main_ddpm": ddpm_parser,
    "main_ldm": ldm_parser,
    "evaluate": evaluate.parser,
    "evaluation": evaluation_parser,
    "data": data_parser,
    "create_cifar10": create_cifar10_data_example.build_parser,
}


def _walk(parser: argparse.ArgumentParser, name: str):
    """(name, parser, action) for every action of the parser and of its sub-commands' parsers."""
    for action in parser._actions:
        yield name, parser, action
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:  # the sub-command lines of the parent's --help
                yield name, parser, choice
            for sub_name, sub in action.choices.items():
                yield from _walk(sub, f"{name} {sub_name}")


def _rendered(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The action's entry in --help, whitespace removed (the help wraps at any space)."""
    formatter = parser._get_formatter()
    formatter.add_argument(action)
    return "".join(formatter.format_help().split())


@pytest.mark.parametrize("tool", list(PARSERS))
def test_every_option_has_help_that_shows_its_default(tool):
    missing, hidden = [], []
    for name, parser, action in _walk(PARSERS[tool](), tool):
        if isinstance(action, argparse._HelpAction):
            continue
        label = f"{name}: {'/'.join(action.option_strings) or action.dest}"
        if not (action.help or "").strip():
            missing.append(label)
        default = action.default
        if action.nargs == 0 or default is None or default is False or default is argparse.SUPPRESS:
            continue  # flags (their help says what they switch) and options without a default
        if f"(default:{''.join(show_default(action).split())})" not in _rendered(parser, action):
            hidden.append(f"{label} (default {default!r})")
    assert not missing, f"options without a help text: {missing}"
    assert not hidden, f"options whose --help does not show the default: {hidden}"


def test_help_shows_bounds_and_list_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        main_ldm.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exc.value.code == 0
    assert "AdamW peak learning rate (default: 0.0001) [> 0 and finite]" in out
    assert "(default: to_k to_q to_v to_out.0)" in out  # a list default, as it is typed
    assert "(default: None)" not in out


@pytest.mark.parametrize(
    "main, argv, flag",
    [
        (main_ddpm.main, ["--learning_rat", "0.1"], "--learning_rat"),
        (main_ldm.main, ["--pretrained_model_name_or_path", "x", "--lora_ran", "4"], "--lora_ran"),
        (evaluate.main, ["--model_path", "x", "--guidance", "3"], "--guidance"),
        (evaluation_main, ["report", "--run_di", "x"], "--run_di"),
        (evaluation_main, ["train-oracle", "--output_dir", "x", "--see", "1"], "--see"),
        (data_main, ["digits", "--output_di", "x"], "--output_di"),
        (create_cifar10_data_example.main, ["--cifar_di", "x"], "--cifar_di"),
        (main_ddpm.main, ["--conf", "x.json"], "--conf"),
    ],
)  # fmt: skip
def test_abbreviated_flag_is_refused(main, argv, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and flag in err[0], err


# ------------------------------------------------------------------------------------------------- --config
def _run(argv) -> int:
    return main_ddpm.main([str(a) for a in argv])


def _parsed(parser: argparse.ArgumentParser, argv) -> argparse.Namespace | int:
    """run_main's parse (with --config, bounds and one-line errors) without running anything."""
    seen = []
    code = run_main(parser, seen.append, [str(a) for a in argv])
    return seen[0] if code == 0 else code


@pytest.fixture
def tiny_run(tmp_path, task_file):
    """A 2-task run of a tiny UNet: (its output dir, its flags)."""
    out = tmp_path / "first"
    flags = ["--data_path", task_file(), *TINY_FLAGS, "--max_train_steps", "2", "--checkpointing_steps", "0"]
    assert _run([*flags, "--output_dir", out, "--learning_rate", "0.001"]) == 0
    return out


def _weights(out) -> dict:
    return load_file(out / "task_2" / "unet" / "diffusion_pytorch_model.safetensors")


def test_rerun_from_config_is_bit_identical(tiny_run, tmp_path):
    again = tmp_path / "again"
    assert _run(["--config", tiny_run / "config.json", "--output_dir", again]) == 0
    a, b = _weights(tiny_run), _weights(again)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    first, second = (json.loads((out / "config.json").read_text()) for out in (tiny_run, again))
    assert second["args"] == {**first["args"], "output_dir": str(again)}  # --config itself is not recorded
    assert "config" not in first["args"] and second["args"]["learning_rate"] == 0.001


def test_flags_override_the_config(tiny_run, tmp_path, capsys):
    argv = ["--config", tiny_run / "config.json", "--output_dir", tmp_path / "o", "--learning_rate", "0.5"]
    assert _run([*argv, "--seed", "7", "--block_out_channels", "16", "32", "--dry_run"]) == 0
    args = json.loads(capsys.readouterr().out)["args"]
    assert args["learning_rate"] == 0.5 and args["seed"] == 7 and args["block_out_channels"] == [16, 32]
    assert args["max_train_steps"] == 2 and args["layers_per_block"] == 1  # the rest from the file
    assert args["output_dir"] == str(tmp_path / "o")


def test_dry_run_args_round_trip_through_a_config(tmp_path, task_file, capsys):
    """Every key a run writes is read back to the same value (None, lists, flags, aliases' destinations)."""
    argv = ["--data_path", task_file(), *TINY_FLAGS, "--use_ema", "--buffer_type", "reservoir", "--dry_run"]
    assert _run(argv) == 0
    written = json.loads(capsys.readouterr().out)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(written))
    args = _parsed(ddpm_parser(), ["--config", path])
    assert {k: v for k, v in vars(args).items() if k != "config"} == written["args"]
    path.write_text(json.dumps(written["args"]))  # the flags alone, as a flat object
    assert vars(_parsed(ddpm_parser(), ["--config", path])) == vars(args)


def test_ldm_config_round_trip_and_derived_key(tmp_path):
    """main_ldm's config.json also records classifier_free_guidance, derived from --uncond_p (not a flag there):
    it is skipped, and a file can supply the required --pretrained_model_name_or_path."""
    args = vars(ldm_parser().parse_args(["--pretrained_model_name_or_path", "sd", "--lora_rank", "4"]))
    args.pop("config")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"args": {**args, "classifier_free_guidance": True}, "train_config": {}, "model": {}}))
    parsed = _parsed(ldm_parser(), ["--config", path, "--uncond_p", "0.2"])
    assert parsed.pretrained_model_name_or_path == "sd" and parsed.lora_rank == 4 and parsed.uncond_p == 0.2
    assert parsed.classifier_free_guidance is False  # the parser's own value; main_ldm derives it from --uncond_p
    assert parsed.lora_target_modules == args["lora_target_modules"]


def test_ldm_rerun_from_config_is_bit_identical(tmp_path, tiny_sd_dir, caption_file):
    """main_ldm records derived values too (classifier_free_guidance; prediction_type for energy models): its own
    config.json reruns it exactly."""
    first, again = tmp_path / "first", tmp_path / "again"
    argv = ["--pretrained_model_name_or_path", tiny_sd_dir, "--data_path", caption_file, "--output_dir", first,
            "--max_train_steps", 2, "--checkpointing_steps", 0, "--train_batch_size", 4, "--num_inference_steps", 2,
            "--num_samples", 1, "--logger", "none", "--seed", 0, "--validation_prompts", "digit 0",
            "--unet_scratch", "--energy_based_training", "--uncond_p", 0.2]  # fmt: skip
    assert main_ldm.main([str(a) for a in argv]) == 0
    written = json.loads((first / "config.json").read_text())["args"]
    assert written["classifier_free_guidance"] is True and written["prediction_type"] == "epsilon"
    assert main_ldm.main(["--config", str(first / "config.json"), "--output_dir", str(again)]) == 0
    a, b = _weights(first), _weights(again)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"learning_rat": 0.1}, "unknown key 'learning_rat' (did you mean 'learning_rate'?)"),
        ({"args": {"zzz_unknown": 1}}, "unknown key 'zzz_unknown'"),
        ({"args": {}, "learning_rate": 0.1}, "unknown key 'learning_rate' next to \"args\""),
        ({"config": "other.json"}, "unknown key 'config'"),
        ({"learning_rate": -1}, "learning_rate must be > 0 and finite, got -1"),
        ({"learning_rate": "NaN"}, "learning_rate must be > 0 and finite, got nan"),
        ({"resolution": 65536}, "resolution must be >= 1 and <= 4096, got 65536"),
        ({"num_epochs": 2.5}, "num_epochs: invalid int value: '2.5'"),
        ({"seed": True}, "seed: invalid int value: 'true'"),
        ({"lr_scheduler": "cosin"}, "lr_scheduler must be one of"),
        ({"strategy": ["replay", "nope"]}, "strategy must be one of"),
        ({"block_out_channels": 8}, "block_out_channels must be a list, got a number"),
        ({"block_out_channels": [8, 0]}, "block_out_channels must be >= 1 and <= 4096, got 0"),
        ({"block_out_channels": []}, "block_out_channels has 0 values"),
        ({"use_ema": "yes"}, "use_ema must be true or false"),
        ({"data_path": 3}, "data_path must be a string, got 3"),
        ({"seed": None}, "seed must be set"),
        ({"learning_rate": [0.1]}, "learning_rate must be a single value, got a list"),
        ({"args": [1]}, '"args" must be a JSON object'),
        ([1, 2], "expected a JSON object of flag values, got a list"),
        ("{not json", "not valid JSON"),
        (None, "cannot read the file"),
    ],
)
def test_bad_config_files_are_refused_with_one_line(tmp_path, task_file, capsys, content, message):
    path = tmp_path / "config.json"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_text(json.dumps(content))
    out = tmp_path / "out"
    argv = ["--data_path", task_file(), *TINY_FLAGS, "--config", path, "--output_dir", out]
    assert _run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --config {path}") and message in err[0], err
    assert not out.exists()


def test_bad_value_in_the_file_is_refused_even_when_a_flag_overrides_it(tmp_path, capsys):
    """The whole file is checked: a flag on top does not hide a bad value under it."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"learning_rate": 0}))
    assert _run(["--config", path, "--learning_rate", "0.1", "--dry_run"]) == 2
    assert "learning_rate must be > 0" in capsys.readouterr().err
