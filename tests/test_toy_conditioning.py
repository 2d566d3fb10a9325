"""A conditioning kind is one class and one registry line: a toy kind defined here, outside the package, and
registered in `CONDITIONINGS` is offered by `--conditioning`, trains, exports its parameters in
continual_diffusers.json, reloads (`load_task_model`, the pipeline, evaluate.py) and samples, with nothing in the
package naming it.

The toy conditions on a class label modulo m ("parity" for m = 2): a UNet2DModel with m class embeddings."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_FLAGS

import evaluate
import main_ddpm
from continual_diffusers import ContinualDiffusionPipeline, load_task_model
from continual_diffusers.cli.training import ddpm_parser
from continual_diffusers.models.conditioning import CONDITIONINGS, Conditioning, ConditionParams
from continual_diffusers.models.conditioning.base import _get
from continual_diffusers.models.spec import ModelSpec
from continual_diffusers.utils import bounds as b
from continual_diffusers.utils.errors import UserInputError


class ModuloParams(ConditionParams):
    json_keys = ("modulus",)

    def __init__(self, modulus: int):
        self.modulus = modulus

    @classmethod
    def from_json(cls, raw, where, refuse):
        return cls(b.Bounds(int, 2, 16).check(f"{where}: modulus", raw.get("modulus")))

    def to_json(self) -> dict:
        return {"modulus": self.modulus}


class ModuloConditioning(Conditioning):
    kind = "modulo"
    description = "class-modulo"
    label_kind = "class"
    call_argument = "class_labels"
    params_type = ModuloParams

    def __init__(self, modulus: int = 2):
        self.modulus = modulus

    def encode(self, labels, device) -> dict:
        return {"class_labels": torch.as_tensor(labels, dtype=torch.long, device=device) % self.modulus}

    def null(self, batch_size: int, device) -> dict:
        raise ValueError("no null condition")

    @classmethod
    def build(cls, context):
        return cls(2)

    @classmethod
    def from_spec(cls, spec, modules):
        return cls(spec.condition.modulus)

    def params(self) -> ModuloParams:
        return ModuloParams(self.modulus)

    @classmethod
    def unet_arguments(cls, spec) -> dict:
        return {"num_class_embeds": spec.num_classes}

    def unet_fields(self) -> dict:
        return {"conditioning": self.kind, "num_classes": self.modulus}

    def unet_mismatch(self, config):
        have = _get(config, "num_class_embeds")
        return None if have == self.modulus else f"has num_class_embeds={have}, not the modulus {self.modulus}"

    def rows(self, spec, requested, argument):
        return list(requested) if requested is not None else spec.seen_classes()


@pytest.fixture
def modulo_registered(monkeypatch):
    monkeypatch.setitem(CONDITIONINGS, "modulo", ModuloConditioning)  # the one registry line


def test_a_registered_kind_trains_exports_reloads_and_samples(modulo_registered, task_file, tmp_path, capsys):
    assert "modulo" in " ".join(ddpm_parser().format_help().split())  # --conditioning {auto,none,...,modulo}
    out = tmp_path / "run"
    argv = ["--data_path", task_file(), *TINY_FLAGS, "--conditioning", "modulo", "--max_train_steps", "2"]
    assert main_ddpm.main([*argv, "--output_dir", str(out), "--logger", "none"]) == 0

    written = json.loads((out / "task_2" / "continual_diffusers.json").read_text())
    assert written["conditioning"] == "modulo" and written["modulus"] == 2 and written["seen_tasks"] == [1, 2]
    assert json.loads((out / "config.json").read_text())["model"]["modulus"] == 2

    model, conditioning, _, spec = load_task_model(str(out / "task_2"))
    assert isinstance(conditioning, ModuloConditioning) and conditioning.modulus == 2
    assert spec.condition == ModuloParams(2) and spec.seen_classes() == [0, 1, 2, 3]
    assert model.unet.config.num_class_embeds == 2
    assert ModelSpec.from_json(spec.to_json(), "round trip") == spec

    pipe = ContinualDiffusionPipeline.from_pretrained(str(out / "task_2"))
    images = pipe(class_labels=[1, 3], num_inference_steps=2, generator=0, output_type="pt").images
    assert images.shape == (2, 3, 8, 8) and torch.isfinite(images).all()
    assert pipe(num_inference_steps=2, generator=0, output_type="pt").labels == [0, 1, 2, 3]  # the seen classes
    with pytest.raises(UserInputError, match="prompt does not fit this class-modulo model"):
        pipe(prompt="a cat", num_inference_steps=2)

    samples = tmp_path / "samples"
    flags = ["--model_path", str(out / "task_2"), "--num_samples", "1", "--num_inference_steps", "2"]
    assert evaluate.main([*flags, "--output_dir", str(samples)]) == 0
    assert (samples / "samples.png").is_file()


def test_an_unregistered_kind_is_refused_by_flag_and_by_file(task_file, tmp_path, capsys):
    argv = ["--data_path", task_file(), *TINY_FLAGS, "--conditioning", "modulo", "--dry_run"]
    with pytest.raises(SystemExit):
        main_ddpm.main(argv)
    assert "invalid choice: 'modulo'" in capsys.readouterr().err
    with pytest.raises(UserInputError, match="conditioning must be one of"):
        ModelSpec.from_json({"conditioning": "modulo", "resolution": 8, "in_channels": 3}, "x.json", export=False)
