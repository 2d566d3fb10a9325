"""`ModelSpec`, the typed continual_diffusers.json: files written by the previous version (before the spec existed)
load and write back unchanged, older layouts the loader accepted still load, bad entries are refused with one line,
and an unconditional model trained on class-labelled data reloads (it used to stop with "classes_per_task must map
task ids to lists of class ids in [0, 0)")."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch
from conftest import TINY_FLAGS, tiny_class_unet

import evaluate
import main_ddpm
from continual_diffusers import ContinualDiffusionPipeline, load_task_model
from continual_diffusers.models.conditioning import ClassParams, SlotParams
from continual_diffusers.models.spec import LatentSpec, ModelSpec
from continual_diffusers.pipelines.loading import weight_folders
from continual_diffusers.utils.errors import UserInputError

# Files as the previous version wrote them (training/build.py's export_metadata + the export's position).
CLASS_EMA_EXPORT = {  # main_ddpm.py on the bundled digits with --use_ema, after task 5
    "classes_per_task": {"1": [0, 1], "2": [2, 3], "3": [4, 5], "4": [6, 7], "5": [8, 9]},
    "classifier_free_guidance": False,
    "conditioning": "class",
    "data_path": "bundled:split_digits",
    "ema": True,
    "energy_type": None,
    "format": "continual-diffusers/model-v1",
    "global_step": 1000,
    "in_channels": 1,
    "null_class_index": None,
    "num_classes": 10,
    "prediction_type": "v_prediction",
    "resolution": 8,
    "seen_tasks": [1, 2, 3, 4, 5],
    "task_id": 5,
    "validation_prompts": [],
}
SLOT_EXPORT = dict(
    CLASS_EMA_EXPORT, conditioning="slots", num_classes=0, classifier_free_guidance=True, ema=False,
    slots={"num_slots": 3, "slot_dim": 8, "num_iterations": 2}, data_path="shapes.npz",
    classes_per_task={"1": [], "2": []}, seen_tasks=[1, 2], task_id=2, in_channels=3,
)  # fmt: skip
LATENT_LORA_EXPORT = dict(
    CLASS_EMA_EXPORT, conditioning="text", num_classes=0, classifier_free_guidance=True, prediction_type="epsilon",
    energy_type="dae", resolution=32, in_channels=3, validation_prompts=["digit 1"], data_path="captions.npz",
    classes_per_task={"1": [], "2": []}, seen_tasks=[1, 2], task_id=2, ema=False,
    latent={"scaling_factor": 0.18215, "shift_factor": None, "downsample": 4, "latent_channels": 4},
    base_model="some/sd-model",
    lora={"rank": 4, "alpha": 4, "mode": "stacked", "active_adapters": ["task_1", "task_2"],
          "adapter_bytes": {"task_1": 100, "task_2": 100}},
)  # fmt: skip
UNCONDITIONAL_EXPORT = dict(CLASS_EMA_EXPORT, conditioning="none", num_classes=0)
# The oldest layout the loader accepted: only the entries sampling and the report read without a default.
MINIMAL_OLD = {"conditioning": "class", "num_classes": 4, "resolution": 8, "in_channels": 3,
               "classes_per_task": {"1": [0, 1], "2": [2, 3]}, "seen_tasks": [1, 2]}  # fmt: skip


@pytest.mark.parametrize(
    "written", [CLASS_EMA_EXPORT, SLOT_EXPORT, LATENT_LORA_EXPORT, UNCONDITIONAL_EXPORT, MINIMAL_OLD],
    ids=["class_ema", "slots", "latent_lora", "unconditional", "minimal_old"],
)  # fmt: skip
def test_files_of_the_previous_version_load_and_write_back_unchanged(written):
    spec = ModelSpec.from_json(copy.deepcopy(written), "continual_diffusers.json")
    assert spec.to_json() == written or written is MINIMAL_OLD
    assert ModelSpec.from_json(spec.to_json(), "again") == spec
    assert spec.seen_tasks == tuple(written["seen_tasks"]) and spec.resolution == written["resolution"]


def test_the_spec_is_typed():
    spec = ModelSpec.from_json(copy.deepcopy(CLASS_EMA_EXPORT), "x.json")
    assert spec.condition == ClassParams(10, null_class=False) and spec.num_classes == 10
    assert spec.classes_per_task[3] == (4, 5) and spec.seen_classes() == list(range(10))
    assert (spec.ema, spec.task_id, spec.global_step, spec.prediction_type) == (True, 5, 1000, "v_prediction")
    slots = ModelSpec.from_json(copy.deepcopy(SLOT_EXPORT), "x.json")
    assert slots.condition == SlotParams({"num_slots": 3, "slot_dim": 8, "num_iterations": 2})
    assert slots.num_classes == 0 and slots.kind.kind == "slots"
    latent = ModelSpec.from_json(copy.deepcopy(LATENT_LORA_EXPORT), "x.json")
    assert latent.latent == LatentSpec(4, 0.18215, None, 4) and latent.lora["active_adapters"] == ["task_1", "task_2"]


def test_the_minimal_old_layout_takes_the_defaults_earlier_versions_read():
    spec = ModelSpec.from_json(copy.deepcopy(MINIMAL_OLD), "x.json")
    assert (spec.prediction_type, spec.energy_type, spec.classifier_free_guidance) == ("epsilon", None, False)
    assert spec.condition == ClassParams(4, null_class=False) and spec.ema is None and spec.format is None
    assert spec.validation_prompts == () and spec.latent is None


def test_unknown_entries_of_a_newer_version_are_kept():
    spec = ModelSpec.from_json(dict(copy.deepcopy(CLASS_EMA_EXPORT), future_entry={"a": 1}), "x.json")
    assert spec.extra == {"future_entry": {"a": 1}} and spec.to_json()["future_entry"] == {"a": 1}


def test_deprecated_dict_access_still_reads_the_json_entries():
    spec = ModelSpec.from_json(copy.deepcopy(CLASS_EMA_EXPORT), "x.json")
    with pytest.warns(DeprecationWarning, match="use its attributes"):
        assert spec["classes_per_task"]["2"] == [2, 3]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"conditioning": "audio"}, "x.json: conditioning must be one of ['none', 'class', 'text', 'slots'], got "
                                    "'audio'; re-export the model or restore the file"),
        ({"num_classes": 10**11}, "x.json: num_classes must be >= 1 and <= 100000, got 100000000000"),
        ({"null_class_index": 3}, "null_class_index must be null or num_classes (10), got 3"),
        ({"energy_type": "l3"}, "energy_type must be null, 'l2' or 'dae', got 'l3'"),
        ({"prediction_type": "x0"}, "prediction_type must be one of ['epsilon', 'sample', 'v_prediction']"),
        ({"ema": "yes"}, "ema must be true or false"),
        ({"resolution": "8"}, "x.json: resolution must be >= 1 and <= 4096, got '8'"),
        ({"classes_per_task": {"1": [0, 99]}}, "classes_per_task must map task ids to lists of class ids in [0, 10)"),
        ({"classes_per_task": {"one": [0]}}, "classes_per_task must map task ids to lists of class ids in [0, 10)"),
        ({"seen_tasks": [7]}, "seen_tasks must list task ids of classes_per_task"),
        ({"seen_tasks": []}, "seen_tasks must list task ids of classes_per_task (an export follows at least one"),
        ({"validation_prompts": "a cat"}, "validation_prompts must be a list of strings"),
        ({"latent": {"downsample": 0}}, "latent.downsample must be an integer in [1, 64]"),
        ({"task_id": "5"}, "task_id must be an integer or null"),
    ],
)  # fmt: skip
def test_bad_entries_are_refused_in_one_line(change, message):
    with pytest.raises(UserInputError) as err:
        ModelSpec.from_json(dict(copy.deepcopy(CLASS_EMA_EXPORT), **change), "x.json")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_entries_every_kind_carried_are_checked_for_kinds_that_do_not_own_them():
    with pytest.raises(UserInputError, match="num_classes must be >= 0 and <= 0, got 4"):
        ModelSpec.from_json(dict(copy.deepcopy(UNCONDITIONAL_EXPORT), num_classes=4), "x.json")
    with pytest.raises(UserInputError, match="slots must be an object of"):
        ModelSpec.from_json(dict(copy.deepcopy(SLOT_EXPORT), slots=[3]), "x.json")


def test_an_export_in_the_oldest_layout_loads(tmp_path):
    """A folder whose metadata has only the required entries (and unet/ + unet_ema/, the older weight layout)."""
    from diffusers import DDPMScheduler

    from continual_diffusers.models.denoiser import ScoreModel
    from continual_diffusers.training.export import write_export

    torch.manual_seed(0)
    task = tmp_path / "task_2"
    meta = dict(MINIMAL_OLD, prediction_type="epsilon")
    write_export(str(task), ScoreModel(tiny_class_unet(4)), None, DDPMScheduler(num_train_timesteps=10), meta)
    (task / "continual_diffusers.json").write_text(json.dumps(MINIMAL_OLD))
    shutil.copytree(task / "unet", task / "unet_ema")
    spec = load_task_model(str(task))[3]
    assert spec == ModelSpec.from_json(MINIMAL_OLD, "x") and weight_folders(str(task), spec)["ema"] == "unet_ema"
    images = ContinualDiffusionPipeline.from_pretrained(str(task))(num_inference_steps=2, output_type="pt").images
    assert images.shape == (4, 3, 8, 8)


def test_an_unconditional_model_trained_on_class_labels_reloads(task_file, tmp_path):
    """main_ddpm --conditioning none on class-labelled data, then evaluate.py and the pipeline on its export."""
    out = tmp_path / "run"
    argv = ["--data_path", task_file(), *TINY_FLAGS, "--conditioning", "none", "--max_train_steps", "1"]
    assert main_ddpm.main([*argv, "--output_dir", str(out), "--logger", "none"]) == 0
    written = json.loads((out / "task_1" / "continual_diffusers.json").read_text())
    assert written["conditioning"] == "none" and written["classes_per_task"] == {"1": [0, 1], "2": [2, 3]}
    flags = ["--model_path", str(out / "task_1"), "--num_samples", "2", "--num_inference_steps", "2"]
    assert evaluate.main([*flags, "--output_dir", str(tmp_path / "samples")]) == 0
    pipe = ContinualDiffusionPipeline.from_pretrained(str(out / "task_1"))
    assert pipe.spec.classes_per_task == {1: (0, 1), 2: (2, 3)} and pipe.spec.seen_tasks == (1,)
    assert pipe(num_inference_steps=2, output_type="pt", generator=0).images.shape == (1, 3, 8, 8)
