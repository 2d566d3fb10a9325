"""`ModelSpec`: one typed, validated description of a task model, whose JSON form (`to_json` / `from_json`) is an
export's `continual_diffusers.json` and the "model" section of a run's config.json. Everything that reads an export's
metadata (loading, the pipeline, evaluate.py, the evaluation report, model cards, resuming) reads a `ModelSpec`.

Fields: the conditioning kind and its parameters (`condition`, owned by the kind: models/conditioning/), the
parameterisation (energy type, prediction type, classifier-free guidance), the image size (resolution, channels;
`latent` for latent models), the tasks (classes per task, the tasks seen so far, the task file's class order) and
where the model stands (task id, global step, whether unet/ holds EMA weights).

The file is input: `from_json` checks every field it reads with one-line messages naming the file, with the bounds of
utils/bounds.py. Files of earlier versions load: keys added later are optional (a file needs only conditioning,
resolution, in_channels, classes_per_task and seen_tasks), and entries of kinds that do not own them keep the values
earlier versions wrote for every kind (num_classes 0, null_class_index null). Unknown keys are kept as read (`extra`)
and written back, so a file of a newer version survives a round trip.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..utils import bounds as b
from ..utils.errors import UserInputError
from .conditioning import CONDITIONINGS, Conditioning, ConditionParams, conditioning_class

METADATA_FILE = "continual_diffusers.json"
MODEL_FORMAT = "continual-diffusers/model-v1"
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
ENERGY_TYPES = ("l2", "dae")
# What every export's metadata holds, and what sampling and the report read without a default.
REQUIRED_KEYS = ("conditioning", "resolution", "in_channels", "classes_per_task", "seen_tasks")
# Entries every earlier version wrote for every kind; a kind that does not own them keeps these values.
LEGACY_ENTRIES = {"num_classes": 0, "null_class_index": None}
TASK_IDS = b.Bounds(int, -(10**9), 10**9)


@dataclass(frozen=True)
class LatentSpec:
    """A latent model's VAE: `downsample` (pixels per latent side), and the scaling of its latents."""

    downsample: int
    scaling_factor: float | None = None
    shift_factor: float | None = None
    latent_channels: int | None = None

    @classmethod
    def from_json(cls, raw, refuse) -> LatentSpec:
        if not isinstance(raw, dict) or not b.Bounds(int, 1, 64).contains(raw.get("downsample")):
            raise refuse("latent.downsample must be an integer in [1, 64]")
        for key in ("scaling_factor", "shift_factor"):
            if raw.get(key) is not None and not b.FINITE.contains(raw[key]):
                raise refuse(f"latent.{key} must be a finite number or null")
        if raw.get("latent_channels") is not None and not b.CHANNELS.contains(raw["latent_channels"]):
            raise refuse(f"latent.latent_channels must be {b.CHANNELS.describe()}")
        return cls(raw["downsample"], raw.get("scaling_factor"), raw.get("shift_factor"), raw.get("latent_channels"))

    def to_json(self) -> dict:
        return {
            "scaling_factor": self.scaling_factor,
            "shift_factor": self.shift_factor,
            "downsample": self.downsample,
            "latent_channels": self.latent_channels,
        }


@dataclass(frozen=True)
class ModelSpec:
    """A task model, typed (module docstring). `classes_per_task` maps task ids to class ids; `seen_tasks` lists
    the tasks trained so far (empty before the first export); `task_id`, `global_step` and `ema` are set in an
    export (`at_export`)."""

    conditioning: str
    resolution: int
    in_channels: int
    condition: ConditionParams = field(default_factory=ConditionParams)
    classifier_free_guidance: bool = False
    energy_type: str | None = None
    prediction_type: str = "epsilon"
    classes_per_task: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    seen_tasks: tuple[int, ...] = ()
    validation_prompts: tuple[str, ...] = ()
    data_path: str | None = None
    latent: LatentSpec | None = None
    class_order: tuple[int, ...] | None = None
    class_names: tuple[str, ...] | None = None
    task_id: int | None = None
    global_step: int | None = None
    ema: bool | None = None
    base_model: str | None = None
    lora: Mapping | None = None
    format: str | None = MODEL_FORMAT
    extra: Mapping = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------------- making
    @classmethod
    def for_run(
        cls,
        tasks,
        conditioning: Conditioning,
        *,
        energy_type: str | None,
        prediction_type: str,
        classifier_free_guidance: bool,
        resolution: int,
        validation_prompts=(),
        data_path: str = "python",
        latent: LatentSpec | None = None,
        base_model: str | None = None,
        lora: Mapping | None = None,
    ) -> ModelSpec:
        """The spec of a training run over `tasks` (a `TaskSequence`): what every task export records, before its
        position (`at_export`). `data_path` "python": no task file (evaluate.py --slot_mode then asks for
        --slot_data)."""
        order = getattr(tasks, "class_order", None)
        names = getattr(tasks, "class_names", None)
        return cls(
            conditioning=conditioning.kind,
            condition=conditioning.params(),
            classifier_free_guidance=bool(classifier_free_guidance),
            energy_type=energy_type,
            prediction_type=prediction_type,
            resolution=resolution,
            in_channels=tasks.num_channels,
            classes_per_task={t.task_id: tuple(t.classes()) for t in tasks},
            validation_prompts=tuple(validation_prompts or ()),
            data_path=data_path,
            latent=latent,
            base_model=base_model,
            lora=lora,
            class_order=None if order is None else tuple(order),
            class_names=None if names is None or order is None else tuple(names),
        )

    def at_export(self, task_id: int, seen_tasks, global_step: int) -> ModelSpec:
        """The spec of the export after task `task_id`."""
        return dataclasses.replace(self, task_id=task_id, seen_tasks=tuple(seen_tasks), global_step=global_step)

    def replace(self, **changes) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    def updated(self, entries: Mapping, where: str = "metadata") -> ModelSpec:
        """This spec with JSON `entries` added or replaced, checked as a file's would be."""
        return ModelSpec.from_json({**self.to_json(), **entries}, where, export=False)

    @classmethod
    def of(cls, value, where: str = "metadata") -> ModelSpec:
        """`value` as a spec: a `ModelSpec` as is, a continual_diffusers.json object checked into one."""
        if isinstance(value, ModelSpec):
            return value
        if not isinstance(value, Mapping):
            raise UserInputError(f"{where} must be a ModelSpec or its JSON object, got {type(value).__name__}")
        return cls.from_json(dict(value), where, export=False)

    # ------------------------------------------------------------------------------------------------ reading
    @property
    def kind(self) -> type[Conditioning]:
        """The conditioning kind's class (its registry entry)."""
        return CONDITIONINGS[self.conditioning]

    @property
    def num_classes(self) -> int:
        """The class ids a class-conditional model takes; 0 for other kinds."""
        return getattr(self.condition, "num_classes", 0)

    def seen_classes(self) -> list[int]:
        """Every class of the tasks seen so far, sorted."""
        return sorted({c for t in self.seen_tasks for c in self.classes_per_task.get(t, ())})

    # ----------------------------------------------------------------------------------------------- the JSON
    def to_json(self) -> dict:
        """The `continual_diffusers.json` object (entries in the order earlier versions wrote them)."""
        out = {"format": self.format} if self.format is not None else {}
        out.update({"conditioning": self.conditioning, **LEGACY_ENTRIES, **self.condition.to_json()})
        out.update(
            classifier_free_guidance=self.classifier_free_guidance,
            energy_type=self.energy_type,
            prediction_type=self.prediction_type,
            resolution=self.resolution,
            in_channels=self.in_channels,
            classes_per_task={str(t): list(c) for t, c in self.classes_per_task.items()},
            validation_prompts=list(self.validation_prompts),
            data_path=self.data_path,
        )
        optional = {
            "latent": None if self.latent is None else self.latent.to_json(),
            "base_model": self.base_model,
            "lora": None if self.lora is None else dict(self.lora),
            "class_order": None if self.class_order is None else list(self.class_order),
            "class_names": None if self.class_names is None else list(self.class_names),
            "task_id": self.task_id,
            "seen_tasks": list(self.seen_tasks) if self.seen_tasks else None,
            "global_step": self.global_step,
            "ema": self.ema,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    @classmethod
    def from_json(cls, raw, where: str, export: bool = True) -> ModelSpec:
        """The spec in metadata object `raw` read from `where` (a path, for messages), checked. `export`: it is an
        export's (every `REQUIRED_KEYS` entry, at least one seen task); False: a run's, before any export."""
        if not isinstance(raw, dict):
            raise UserInputError(f"{where}: expected a JSON object, got {type(raw).__name__}")

        def refuse(what: str) -> UserInputError:
            return UserInputError(f"{where}: {what}; re-export the model or restore the file")

        required = REQUIRED_KEYS if export else REQUIRED_KEYS[:3]
        missing = [key for key in required if key not in raw]
        if missing:
            raise UserInputError(f"{where} is not a task model's metadata (no {missing[0]!r} key)")
        try:
            kind = conditioning_class(raw["conditioning"])
        except UserInputError as err:
            raise refuse(str(err)) from None
        condition = kind.params_type.from_json(raw, where, refuse)
        _check_legacy_entries(raw, condition, where, refuse)
        if raw.get("energy_type") not in (None, *ENERGY_TYPES):
            raise refuse(f"energy_type must be null, 'l2' or 'dae', got {b.shown(raw['energy_type'])}")
        if raw.get("prediction_type", "epsilon") not in PREDICTION_TYPES:
            raise refuse(
                f"prediction_type must be one of {list(PREDICTION_TYPES)}, got {b.shown(raw['prediction_type'])}"
            )
        for key in ("classifier_free_guidance", "ema"):
            if not isinstance(raw.get(key, False), bool):
                raise refuse(f"{key} must be true or false")
        b.RESOLUTION.check(f"{where}: resolution", raw.get("resolution"))
        b.CHANNELS.check(f"{where}: in_channels", raw.get("in_channels"))
        per_task = _classes_per_task(raw.get("classes_per_task", {}), condition.class_ids, refuse)
        seen = raw.get("seen_tasks", [])
        if not isinstance(seen, list) or not all(isinstance(t, int) and t in per_task for t in seen):
            raise refuse("seen_tasks must list task ids of classes_per_task (an export follows at least one task)")
        if export and not seen:
            raise refuse("seen_tasks must list task ids of classes_per_task (an export follows at least one task)")
        prompts = raw.get("validation_prompts", [])
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise refuse("validation_prompts must be a list of strings")
        latent = None if raw.get("latent") is None else LatentSpec.from_json(raw["latent"], refuse)
        known = {f.name for f in dataclasses.fields(cls)} | set(LEGACY_ENTRIES) | set(kind.params_type.json_keys)
        return cls(
            conditioning=raw["conditioning"],
            condition=condition,
            classifier_free_guidance=raw.get("classifier_free_guidance", False),
            energy_type=raw.get("energy_type"),
            prediction_type=raw.get("prediction_type", "epsilon"),
            resolution=raw["resolution"],
            in_channels=raw["in_channels"],
            classes_per_task=per_task,
            seen_tasks=tuple(seen),
            validation_prompts=tuple(prompts),
            data_path=_optional(raw, "data_path", str, refuse),
            latent=latent,
            class_order=_optional_list(raw, "class_order", int, refuse),
            class_names=_optional_list(raw, "class_names", str, refuse),
            task_id=_optional(raw, "task_id", int, refuse),
            global_step=_optional(raw, "global_step", int, refuse),
            ema=raw.get("ema"),
            base_model=_optional(raw, "base_model", str, refuse),
            lora=_optional(raw, "lora", dict, refuse),
            format=_optional(raw, "format", str, refuse),
            extra={k: v for k, v in raw.items() if k not in known},
        )

    # ------------------------------------------------------------------------------ dict access (deprecated)
    def __getitem__(self, key: str):
        """`spec["seen_tasks"]`: the JSON entry, as `load_task_model`'s metadata dict gave it before this class
        (deprecated: use the attributes)."""
        warnings.warn(
            "indexing a ModelSpec is deprecated: use its attributes (spec.seen_tasks), or spec.to_json()[key]",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.to_json()[key]

    def get(self, key: str, default=None):
        """Deprecated dict access, like `__getitem__`."""
        warnings.warn("ModelSpec.get is deprecated: use its attributes", DeprecationWarning, stacklevel=2)
        return self.to_json().get(key, default)


def _check_legacy_entries(raw: dict, condition: ConditionParams, where: str, refuse) -> None:
    """num_classes / null_class_index of a kind that does not own them: the values earlier versions wrote."""
    if "num_classes" not in condition.json_keys:
        b.Bounds(int, 0, 0).check(f"{where}: num_classes", raw.get("num_classes", 0))
    if "null_class_index" not in condition.json_keys and raw.get("null_class_index") is not None:
        raise refuse(f"null_class_index must be null or num_classes (0), got {b.shown(raw['null_class_index'])}")


def _classes_per_task(per_task, class_ids: int | None, refuse) -> dict[int, tuple[int, ...]]:
    """{task id: class ids} of the JSON object {"<task id>": [class ids]}; ids in [0, class_ids) when the kind
    conditions on them, else any class id of the data (an unconditional model trained on labelled data)."""
    bounds = b.CLASS_ID if class_ids is None else b.Bounds(int, 0, max(class_ids - 1, 0))
    if not isinstance(per_task, dict) or not all(
        _is_task_key(k) and isinstance(v, list) and all(bounds.contains(c) for c in v) for k, v in per_task.items()
    ):
        limit = f"in [0, {class_ids})" if class_ids is not None else f"({bounds.describe()})"
        raise refuse(f"classes_per_task must map task ids to lists of class ids {limit}")
    return {int(k): tuple(v) for k, v in per_task.items()}


def _is_task_key(key: str) -> bool:
    try:
        return str(int(key)) == key and TASK_IDS.contains(int(key))
    except ValueError:
        return False


def _optional(raw: dict, key: str, kind: type, refuse):
    value = raw.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is int):
        raise refuse(f"{key} must be {'an integer' if kind is int else 'a ' + kind.__name__} or null")
    if isinstance(value, float) and not math.isfinite(value):
        raise refuse(f"{key} must be finite")
    return value


def _optional_list(raw: dict, key: str, kind: type, refuse) -> tuple | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise refuse(f"{key} must be a list of {'integers' if kind is int else 'strings'}")
    return tuple(value)
