"""Strategies end to end through main_ddpm on tiny models: every strategy (and combinations, with the earlier
implementation's flags) trains three tasks and checkpoints its state; the Fisher does not depend on gradient
accumulation; a 3-task EWC + replay run interrupted in task 3 resumes to identical weights and state; bad strategy
flags exit 2 with one line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from accelerate.state import AcceleratorState
from conftest import TINY_FLAGS
from safetensors.torch import load_file

import main_ddpm
from continual_diffusers.strategies import CombinedStrategy, ContinualStrategy
from continual_diffusers.utils.errors import UserInputError


def run(argv) -> int:
    return main_ddpm.main([str(a) for a in argv])


def _strategy_state(checkpoint) -> tuple[dict, dict]:
    return load_file(checkpoint / "strategy.safetensors"), json.loads((checkpoint / "strategy.json").read_text())


# case → (the strategy name recorded in the checkpoint, flags)
STRATEGY_FLAGS = {
    "naive": ("naive", []),
    "reservoir-legacy": ("replay", ["--buffer_type", "reservoir", "--buffer_size", 6,
                                    "--retain_label_uniform_sampling"]),
    "no_data": ("replay", ["--buffer_type", "no_data"]),
    "all_data": ("replay", ["--buffer_type", "all_data"]),
    "stream-ratio": ("replay", ["--buffer_policy", "stream_reservoir", "--buffer_size", 5, "--replay_ratio", 0.5,
                                "--replay_loss_weight", 0.5]),
    "ewc-legacy": ("ewc", ["--ewc_loss", "--lambda_ewc", 10, "--num_samples_ewc", 4]),
    "ewc-online-energy": ("ewc", ["--strategy", "ewc", "--ewc_mode", "online", "--ewc_gamma", 0.9,
                                  "--num_samples_ewc", 3, "--energy_based_training"]),
    "si": ("si", ["--strategy", "si", "--si_lambda", 2.0]),
    "ewc+si+replay": ("replay+ewc+si", ["--strategy", "si", "ewc", "--buffer_type", "task_balanced",
                                        "--buffer_size", 4, "--num_samples_ewc", 2, "--ewc_fisher_timesteps", 1]),
}  # fmt: skip


@pytest.mark.parametrize("name", list(STRATEGY_FLAGS))
def test_each_strategy_trains_three_tasks(tmp_path, task_file, name):
    out = tmp_path / "run"
    expected_name, flags = STRATEGY_FLAGS[name]
    argv = ["--data_path", task_file(num_tasks=3), "--output_dir", out, "--max_train_steps", 2,
            "--checkpointing_steps", 0, *TINY_FLAGS, *flags]  # fmt: skip
    assert run(argv) == 0
    assert all((out / f"task_{k}" / "samples.png").is_file() for k in (1, 2, 3))
    tensors, rest = _strategy_state(out / "checkpoint-6")
    training_state = json.loads((out / "checkpoint-6" / "training_state.json").read_text())
    assert training_state["strategy"] == expected_name
    if name == "reservoir-legacy":
        assert tensors["buffer.images"].dtype == torch.uint8 and tensors["buffer.images"].shape == (6, 3, 8, 8)
        assert torch.bincount(tensors["buffer.task_ids"]).tolist() == [0, 2, 2, 2]
        assert (torch.bincount(tensors["buffer.labels"]) > 0).all()  # each of the 6 classes kept
    if name == "no_data":
        assert tensors["buffer.images"].shape == (0, 3, 8, 8) and rest["buffer.num_seen"] == 24
    if name == "all_data":
        assert len(tensors["buffer.images"]) == 24 and rest["buffer.num_seen"] == 24
    if name == "ewc-legacy":
        assert rest["slots"] == ["1", "2", "3"] and all(torch.isfinite(v).all() for v in tensors.values())
        assert any(k.startswith("fisher.3.unet.") and tensors[k].abs().sum() > 0 for k in tensors)
    if name == "ewc-online-energy":
        assert rest["slots"] == ["online"]
    if name == "ewc+si+replay":
        assert rest["ewc/slots"] == ["1", "2", "3"] and rest["si/start_task"] is None
        assert len(tensors["replay/buffer.images"]) == 4 and any(k.startswith("si/importance.") for k in tensors)


def test_text_model_with_ewc_and_replay_keeps_captions(tmp_path, task_file, tiny_clip_dir):
    out = tmp_path / "run"
    argv = ["--data_path", task_file("text"), "--output_dir", out, "--max_train_steps", 1, "--checkpointing_steps",
            0, *TINY_FLAGS, "--clip_text_pretrained_path", tiny_clip_dir, "--validation_prompts", "digit 1",
            "--ewc_loss", "--num_samples_ewc", 2, "--ewc_fisher_timesteps", 1, "--buffer_type", "stream_reservoir",
            "--buffer_size", 5]  # fmt: skip
    assert run(argv) == 0
    tensors, rest = _strategy_state(out / "checkpoint-2")
    assert len(rest["replay/buffer.captions"]) == 5 and set(rest["replay/buffer.captions"]) <= {
        f"digit {c}" for c in range(4)
    }
    assert rest["ewc/slots"] == ["1", "2"] and all(torch.isfinite(v).all() for v in tensors.values())


class _Fake(ContinualStrategy):
    def __init__(self, name, value, batch=None):
        self.name, self.value, self.batch, self.calls = name, value, batch, []

    def before_task(self, model, task_id, apply_ema=None):
        self.calls.append(("before_task", task_id))

    def replay_batch(self, batch_size, generator):
        return self.batch

    def penalty(self, model, out):
        return None if self.value is None else torch.tensor(self.value)

    def log_values(self):
        return {f"{self.name}_value": 1.0}

    def state_dict(self):
        return {"x": torch.tensor([self.value or 0.0]), "n": 1}

    def load_state_dict(self, state):
        self.loaded = state


def test_combined_strategy_runs_every_hook_in_order():
    batch = {"images": torch.zeros(2, 3, 8, 8), "labels": torch.tensor([1, 2]), "loss_weight": 0.5}
    a, b, c = (
        _Fake("a", 1.5, batch),
        _Fake("b", None, dict(batch, labels=torch.tensor([3]), images=torch.ones(1, 3, 8, 8))),
        _Fake("c", 2.0),
    )
    combined = CombinedStrategy([a, b, c])
    combined.before_task(None, 4)
    assert combined.name == "a+b+c" and all(s.calls == [("before_task", 4)] for s in (a, b, c))
    assert combined.penalty(None, None).item() == 3.5
    replay = combined.replay_batch(4, None)
    assert replay["images"].shape[0] == 3 and replay["labels"].tolist() == [1, 2, 3] and replay["loss_weight"] == 0.5
    assert combined.log_values() == {"a_value": 1.0, "b_value": 1.0, "c_value": 1.0}
    state = combined.state_dict()
    assert set(state) == {"a/x", "a/n", "b/x", "b/n", "c/x", "c/n"}
    combined.load_state_dict(state)
    assert c.loaded["n"] == 1 and torch.equal(c.loaded["x"], torch.tensor([2.0]))
    with pytest.raises(UserInputError, match=r"strategies \['d'\] not enabled"):
        combined.load_state_dict({"d/x": 1})
    with pytest.raises(ValueError, match="distinct"):
        CombinedStrategy([a, _Fake("a", 0.0)])


def test_fisher_does_not_depend_on_gradient_accumulation_or_mixed_precision(tmp_path, task_file):
    """With a vanishing learning rate every run ends task 1 with the same weights, so their Fisher must agree (the
    earlier implementation's Fisher was divided by GA² and multiplied by the fp16 loss scale squared)."""
    data, fishers = task_file(num_tasks=1), []
    for ga, precision in ((1, "no"), (2, "no"), (1, "bf16")):
        out = tmp_path / f"ga{ga}_{precision}"
        argv = ["--data_path", data, "--output_dir", out, "--max_train_steps", 1, "--learning_rate", 1e-30,
                "--gradient_accumulation_steps", ga, "--mixed_precision", precision, *TINY_FLAGS, "--ewc_loss",
                "--num_samples_ewc", 4]  # fmt: skip
        AcceleratorState._reset_state(reset_partial_state=True)  # the precision is fixed once per process
        try:
            assert run(argv) == 0
        finally:
            AcceleratorState._reset_state(reset_partial_state=True)
        fishers.append(_strategy_state(out / "checkpoint-1")[0])
    reference = fishers[0]
    assert any(k.startswith("fisher.1.") and reference[k].abs().sum() > 0 for k in reference)
    for other in fishers[1:]:
        assert other.keys() == reference.keys()
        for key in reference:
            torch.testing.assert_close(other[key], reference[key], rtol=1e-4, atol=1e-12)


def test_ewc_and_replay_resume_in_task_3_gives_identical_weights(tmp_path, task_file):
    common = [
        "--data_path",
        task_file(num_tasks=3),
        "--max_train_steps",
        4,
        "--checkpointing_steps",
        5,
        "--gradient_accumulation_steps",
        2,
        "--use_ema",
        "--random_flip",
        *TINY_FLAGS,
        "--ewc_loss",
        "--num_samples_ewc",
        4,
        "--buffer_type",
        "reservoir",
        "--buffer_size",
        6,
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run([*common, "--output_dir", straight]) == 0
    # Simulate a stop after global step 10 (task 3, step 2 of 4): keep what existed then, and resume from it.
    assert run([*common, "--output_dir", resumed]) == 0
    for name in ("checkpoint-12", "task_3"):
        shutil.rmtree(resumed / name)
    assert json.loads((resumed / "checkpoint-10" / "training_state.json").read_text())["task_index"] == 2
    assert run([*common, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]) == 0
    final_a, final_b = straight / "checkpoint-12", resumed / "checkpoint-12"
    a, b = load_file(final_a / "model.safetensors"), load_file(final_b / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    (sa, ja), (sb, jb) = _strategy_state(final_a), _strategy_state(final_b)
    assert ja == jb and sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert {"ewc/slots", "replay/buffer.num_seen"} <= ja.keys() and ja["ewc/slots"] == ["1", "2", "3"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--buffer_type", "reservoir", "--buffer_size", "-1"], "--buffer_size must be >= 0"),
        (["--buffer_type", "reservoir", "--replay_ratio", "1"], "--replay_ratio must be in [0, 1)"),
        (["--ewc_loss", "--lambda_ewc", "-1"], "--lambda_ewc must be >= 0"),
        (["--ewc_loss", "--ewc_gamma", "0"], "--ewc_gamma must be in (0, 1]"),
        (["--ewc_loss", "--num_samples_ewc", "0"], "--num_samples_ewc must be >= 1"),
        (["--lambda_ewc", "0.5"], "--lambda_ewc is set but ewc is off"),
        (["--strategy", "naive", "--ewc_loss"], "--strategy naive cannot be combined"),
        (["--buffer_type", "all_data", "--retain_label_uniform_sampling"], "applies to --buffer_type reservoir"),
        (["--strategy", "si", "--si_epsilon", "0"], "--si_epsilon must be > 0"),
        (["--strategy", "si", "--mixed_precision", "fp16"], "fp16 gradient scaling"),
    ],
)
def test_bad_strategy_flags_exit_2_with_one_line(tmp_path, task_file, capsys, flags, message):
    assert run(["--data_path", task_file(), "--output_dir", tmp_path / "out", *TINY_FLAGS, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "out").exists()


def test_ema_refuses_a_parameter_set_changed_after_the_trainer_was_built():
    from types import SimpleNamespace

    from diffusers.training_utils import EMAModel

    from continual_diffusers.training.trainer import ContinualTrainer

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    trainer = SimpleNamespace(model=model, ema=EMAModel(model.parameters()))
    ContinualTrainer._check_ema_pairing(trainer)  # unchanged: fine
    model.append(torch.nn.Linear(2, 2))  # e.g. a strategy injecting an adapter in before_task
    with pytest.raises(RuntimeError, match="changed the parameter set"):
        ContinualTrainer._check_ema_pairing(trainer)
    ContinualTrainer._check_ema_pairing(SimpleNamespace(model=model, ema=None))  # no EMA: nothing to pair
