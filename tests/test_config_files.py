"""The readers and checks behind tests/test_hostile_configs_exports.py, one rule at a time: the bounded JSON reader
(utils/jsonfile.py), numbers beyond any float in `Bounds`, model-config and scheduler-config values, and the
Markdown escaping of file text (utils/markdown.py), checked against a CommonMark renderer."""

from __future__ import annotations

import html
import json
import os
import threading

import pytest

from continual_diffusers.models.config_check import UNET_SIZES, check_config_values, check_model_config
from continual_diffusers.sampling.schedule_check import check_sampling_timesteps, check_schedule_config
from continual_diffusers.utils import bounds as b
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.files import open_regular_file
from continual_diffusers.utils.jsonfile import (
    MAX_JSON_BYTES_ENV,
    MAX_JSON_DEPTH,
    json_depth,
    read_json,
    read_json_object,
)
from continual_diffusers.utils.markdown import markdown_text


def _returns_quickly(fn, seconds: float = 10.0):
    """Run `fn` in a daemon thread: (finished in time, its exception or None)."""
    outcome = {}

    def target():
        try:
            fn()
        except BaseException as error:  # recorded for the assertion
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), outcome.get("error")


# ------------------------------------------------------------------------------------------------ the reader
def test_fifo_is_refused_without_blocking(tmp_path):
    """A plain open() of a FIFO blocks until a writer comes; the reader opens without blocking and checks the
    opened descriptor, so it is refused at once (also when it was swapped in after any earlier check)."""
    path = tmp_path / "config.json"
    os.mkfifo(path)
    done, error = _returns_quickly(lambda: read_json(path))
    assert done, "reading a FIFO blocked"
    assert isinstance(error, UserInputError) and str(error) == f"{path}: a FIFO, not a regular file"
    done, error = _returns_quickly(lambda: open_regular_file(path))
    assert done and isinstance(error, UserInputError)


@pytest.mark.parametrize("path, kind", [("/dev/zero", "a character device"), ("/dev/null", "a character device")])
def test_devices_and_folders_are_refused(path, kind, tmp_path):
    with pytest.raises(UserInputError, match=f"{kind}, not a regular file"):
        read_json(path)
    with pytest.raises(UserInputError, match="a folder, not a regular file"):
        read_json(tmp_path)


def test_size_cap_is_checked_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(3 * 2**30)  # sparse: reading it would take 3 GiB
    with pytest.raises(UserInputError, match="3221225472 bytes, more than the 16777216 allowed"):
        read_json(big)
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"x": "y" * 100}))
    with pytest.raises(UserInputError, match="more than the 50 allowed"):
        read_json(small, max_bytes=50)
    monkeypatch.setenv(MAX_JSON_BYTES_ENV, "50")
    with pytest.raises(UserInputError, match=f"raise the cap with \\${MAX_JSON_BYTES_ENV}"):
        read_json(small)
    monkeypatch.setenv(MAX_JSON_BYTES_ENV, "lots")
    with pytest.raises(UserInputError, match="must be a positive whole number"):
        read_json(small)


def test_nesting_limit(tmp_path):
    ok, deep, deeper = tmp_path / "ok.json", tmp_path / "deep.json", tmp_path / "deeper.json"
    ok.write_text("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    deep.write_text("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    deeper.write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)  # beyond the parser's own recursion limit
    assert json_depth(read_json(ok)) == MAX_JSON_DEPTH
    for path in (deep, deeper):
        with pytest.raises(UserInputError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
            read_json(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\xff\xfe{}", "not UTF-8 text (byte 0)"),
        (b"{1: 2}", "not valid JSON (Expecting property name"),
        (b"[1, 2]", "holds a JSON list, not an object"),
        (b"1" * 5000, "not valid JSON (Exceeds the limit (4300 digits)"),
    ],
)
def test_bad_content_is_one_line(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(UserInputError) as caught:
        read_json_object(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(UserInputError, match="cannot read the file \\(No such file or directory\\)"):
        read_json(tmp_path / "nope.json")


# -------------------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("bounds", [b.SEED, b.POSITIVE, b.FINITE, b.OPEN_UNIT, b.Bounds(float)])
@pytest.mark.parametrize("value", [10**309, -(10**309), 10**4000])
def test_integers_beyond_any_float_are_out_of_bounds(bounds, value):
    """`float(10**309)` raises OverflowError: a bound must say no instead."""
    assert not bounds.contains(value)
    with pytest.raises(UserInputError, match=f"got an integer of {len(str(abs(value)))} digits"):
        bounds.check("x", value)


@pytest.mark.parametrize("value", [json.loads("[" * 900 + "]" * 900), "x" * 10**6, {"a\nb": [1] * 10**5}])
def test_shown_values_stay_short_and_on_one_line(value):
    text = b.shown(value)
    assert len(text) < 200 and "\n" not in text


# ------------------------------------------------------------------------------------------- model configs
@pytest.mark.parametrize(
    "change, message",
    [
        ({"norm_eps": float("nan")}, "norm_eps must be in (0, 1), got nan"),
        ({"norm_eps": float("inf")}, "norm_eps must be in (0, 1), got inf"),
        ({"dropout": -0.5}, "dropout must be in [0, 1), got -0.5"),
        ({"extra_key": float("nan")}, "extra_key must be finite, got nan"),
        ({"extra_key": [1.0, float("-inf")]}, "extra_key must be finite, got -inf"),
        ({"freq_shift": 10**309}, "freq_shift must be >= 0 and <= 4096"),
        ({"extra_key": 2**40}, "extra_key must be within ±2147483647"),
        ({"down_block_types": ["DownBlock2D"] * 10**5}, "down_block_types has 100000 entries, at most 64"),
        ({"extra_key": "x" * 10**5}, "extra_key is a string of 100000 characters"),
        ({"extra_key": json.loads("[" * 20 + "]" * 20)}, "extra_key is nested deeper than 8 levels"),
        ({"_class_name": "AutoencoderKL"}, "describes a AutoencoderKL, this model needs a UNet2DModel"),
        # builds, but cannot run: caught by the forward pass on meta tensors
        ({"attn_norm_num_groups": True}, "cannot run (group_norm(): argument 'num_groups'"),
        ({"mid_block_scale_factor": None}, "the model this config describes cannot run"),
        ({"upsample_type": "evil"}, "the model this config describes cannot run"),
    ],
)
def test_model_config_values(change, message):
    from diffusers import UNet2DModel

    config = {"sample_size": 8, "block_out_channels": [8, 16], "norm_num_groups": 4, "layers_per_block": 1,
              "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
              "attention_head_dim": 8}  # fmt: skip
    skeleton = check_model_config(UNet2DModel, config, "cfg", UNET_SIZES)
    assert all(p.is_meta for p in skeleton.parameters())  # nothing allocated
    with pytest.raises(UserInputError) as caught:
        check_model_config(UNet2DModel, {**config, **change}, "cfg", UNET_SIZES)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_config_walk_needs_no_recursion():
    config = {"a": [[[[[[[[1]]]]]]]]}
    with pytest.raises(UserInputError, match="nested deeper than 8 levels"):
        check_config_values(config, "cfg")


# --------------------------------------------------------------------------------------- scheduler configs
SCHEDULE = {"num_train_timesteps": 10, "beta_schedule": "linear", "prediction_type": "epsilon"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"timestep_spacing": "evil"}, "timestep_spacing must be one of"),
        ({"variance_type": "learned_range"}, "variance_type must be one of"),
        ({"beta_schedule": "sigmoid"}, "beta_schedule must be one of"),
        ({"steps_offset": 10}, "steps_offset must be >= 0 and <= 9, got 10"),
        ({"steps_offset": -1}, "steps_offset must be >= 0 and <= 9, got -1"),
        ({"clip_sample": "yes"}, "clip_sample must be true or false"),
        ({"beta_end": float("nan")}, "beta_end must be in (0, 1), got nan"),
        ({"solver_order": 10**9}, "solver_order must be within ±100000"),
        ({"sigma_max": float("inf")}, "sigma_max must be finite, got inf"),
        ({"algorithm_type": "evil"}, "the dpm++ sampler cannot use this schedule"),
        ({"solver_type": "evil"}, "sampler cannot use this schedule"),
        ({"final_sigmas_type": "evil"}, "sampler cannot use this schedule"),
        ({"trained_betas": [0.1] * 10}, "trained_betas is not supported"),
        ({"extra": {"a": 1}}, "extra must be a number, string, list or null, got an object"),
    ],
)
def test_schedule_config(change, message):
    check_schedule_config(SCHEDULE, "sched")
    check_schedule_config({**SCHEDULE, "lambda_min_clipped": float("-inf")}, "sched")  # DPM-Solver's own default
    with pytest.raises(UserInputError) as caught:
        check_schedule_config({**SCHEDULE, **change}, "sched")
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["ddpm", "ddim", "euler", "euler_a"])
def test_steps_offset_at_full_length(name):
    """diffusers adds steps_offset to "leading" timesteps: at num_inference_steps = T the last one is T, past the
    schedule (an IndexError in the middle of sampling); one step fewer, or "trailing" spacing, fits. (DPM-Solver
    and UniPC space n + 1 points and drop the last, so they stay inside.)"""
    config = {**SCHEDULE, "steps_offset": 1, "timestep_spacing": "leading"}
    with pytest.raises(UserInputError, match="timesteps reach 10, outside the schedule's 0..9"):
        check_sampling_timesteps(name, config, 10, "sched")
    check_sampling_timesteps(name, config, 5, "sched")
    check_sampling_timesteps(name, {**config, "timestep_spacing": "trailing"}, 10, "sched")
    for solver in ("dpm++", "unipc"):
        check_sampling_timesteps(solver, config, 10, "sched")


# ---------------------------------------------------------------------------------------- Markdown escaping
HOSTILE_TEXT = [
    "# Heading",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "**bold** _it_ [link](http://x) ![img](y) `code`",
    "| a | b |",
    "1. list",
    "- item",
    "> quote",
    "&amp; &#60;",
    "a\\b",
    "x<!-- comment -->y",
    "line\nbreak\r\nagain",
    "colour \x1b[31mred\x1b[0m",
    "bidi \u202eevil",
    "<http://autolink> http://bare.link",
    "~~strike~~ $math$",
    "tabby_cat",
]


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_markdown_text_renders_as_the_literal_text(text):
    """Rendered by a CommonMark renderer, the escaped text is exactly the text (HTML-escaped), with control and
    format characters shown as \\u escapes: no tag, heading, link or emphasis, and it stays on one line."""
    markdown_it = pytest.importorskip("markdown_it")
    escaped = markdown_text(text)
    assert "\n" not in escaped and "\r" not in escaped and "\x1b" not in escaped and "<" not in escaped
    visible = "".join(f"\\u{ord(c):04x}" if c in "\n\r\x1b\u202e" else c for c in text)
    want = html.escape(visible, quote=False).replace('"', "&quot;")
    assert markdown_it.MarkdownIt("commonmark").renderInline(escaped) == want
    assert markdown_it.MarkdownIt("commonmark").render(escaped) == f"<p>{want}</p>\n"


def test_report_escapes_class_names(tmp_path):
    from continual_diffusers.evaluation.report import ContinualReport

    report = ContinualReport()
    report.add(1, {"accuracy": {1: 0.5}})
    report.data = {"class_order": [1, 0], "class_names": ["<img src=x onerror=alert(1)>", "# Heading\n## more"]}
    text = (tmp_path / "report").joinpath("report.md")
    report.write(str(tmp_path / "report"))
    lines = text.read_text().splitlines()
    order = [line for line in lines if line.startswith("Class order")]
    assert order == ["Class order (from the task file): 1 (\\# Heading\\\\u000a\\#\\# more), "
                     "0 (&lt;img src\\=x onerror\\=alert\\(1\\)&gt;)"]  # fmt: skip
    assert "<img" not in text.read_text() and sum(line.startswith("#") for line in lines) == 1
