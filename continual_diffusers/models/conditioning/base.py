"""`Conditioning`: what a conditioning kind is, in one class. An instance turns a batch's labels into the UNet's
keyword arguments and builds the null condition of classifier-free guidance (Ho & Salimans 2022); the class is the
kind's registry entry (`CONDITIONINGS` in this package), and owns everything else the library needs to know about
the kind, so nothing outside this package branches on a kind's name:

- its parameters in `continual_diffusers.json` (`params_type`: a `ConditionParams` that reads and writes them);
- its UNet: `cross_attention` (UNet2DConditionModel) and the constructor arguments (`unet_arguments`), what a UNet
  must have to take the condition (`unet_mismatch`);
- its construction: from the run's flags and data (`build`), from an export's spec and modules (`from_spec`,
  `load_modules`), from a pipeline's components alone (`params_from_components`);
- its checks against the training data (`check_training`) and the run's other options (`check_run_options`);
- the label rows it samples (`rows`, `concepts`, `image_rows`) and its pipeline components (`modules`).

The trainer and the objective use only the instance methods `encode`, `null`, `drop`, `training_inputs` and
`training_noise`. A new kind is one file with a `Conditioning` subclass and one line in `CONDITIONINGS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ...utils import bounds as b
from ...utils.errors import UserInputError


class ConditionParams:
    """A kind's entries of `continual_diffusers.json`, typed. The base has none; `class_ids` bounds the class ids of
    `classes_per_task` (None: any class id of the data, which the model does not condition on)."""

    json_keys: ClassVar[tuple[str, ...]] = ()

    @property
    def class_ids(self) -> int | None:
        return None

    @classmethod
    def from_json(cls, raw: dict, where: str, refuse) -> ConditionParams:
        """The entries of `raw` (the metadata object of file `where`), checked; `refuse(what)` makes the one-line
        error of an inconsistent entry."""
        return cls()

    def to_json(self) -> dict:
        return {}

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash((type(self), repr(sorted(self.to_json().items()))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_json()})"


@dataclass(frozen=True)
class BuildContext:
    """What `Conditioning.build` may read: the training tasks, the resolution, whether CFG is trained, the model
    flags (`config.ModelConfig`: num_class_labels, clip_text_pretrained_path, revision, variant) and the kind's
    own flags (an instance of its `options` class, or None)."""

    tasks: Any
    resolution: int
    classifier_free_guidance: bool
    model: Any = None
    options: Any = None


class Conditioning:
    """What every conditioning has (see the module docstring). Class attributes describe the kind:

    - `kind`: its name in export metadata and `--conditioning`; `description`: "class-conditional", ...;
    - `label_kind`: the task labels it trains on ("class", "text"; None: it ignores labels); `auto_label_kind`: the
      data labels `--conditioning auto` picks it for;
    - `call_argument`: the pipeline's keyword for its rows ("class_labels", "prompt", "slots"; None: no labels);
    - `conditional`: False for the unconditional kind (nothing to compose or guide);
    - `oracle_evaluation`: how the end-of-task oracle scores it ("per_class", "pooled"; None: it cannot);
    - `reconstructs_references`: end-of-task samples reconstruct reference images (`image_rows`);
    - `options`: its flags (a `utils.options` config class), or None; `model_flag`: (a flag of the Model group that
      only this kind reads and that selects it under `--conditioning auto`, what it sets), or None;
    - `supports_null` (per instance): it has a null condition, so classifier-free guidance can be trained and
      sampled.
    """

    kind: ClassVar[str]
    description: ClassVar[str]
    label_kind: ClassVar[str | None] = None
    auto_label_kind: ClassVar[str | None] = None
    call_argument: ClassVar[str | None] = None
    conditional: ClassVar[bool] = True
    cross_attention: ClassVar[bool] = False
    oracle_evaluation: ClassVar[str | None] = None
    reconstructs_references: ClassVar[bool] = False
    params_type: ClassVar[type[ConditionParams]] = ConditionParams
    options: ClassVar[type | None] = None
    model_flag: ClassVar[tuple[str, str] | None] = None
    supports_null: bool = False

    # ------------------------------------------------------------------------------------ batches → UNet kwargs
    def encode(self, labels, device: torch.device) -> dict:
        """The UNet's conditioning kwargs for `labels` (what `training_inputs` gives for a training batch)."""
        raise NotImplementedError

    def null(self, batch_size: int, device: torch.device) -> dict:
        """The null condition of `batch_size` rows (classifier-free guidance)."""
        raise NotImplementedError

    def drop(self, cond: dict, keep: torch.Tensor) -> dict:
        """CFG dropout: rows of `cond` where `keep` (B,) is False get the null condition. Default: `cond`."""
        return cond

    def training_inputs(self, batch: dict):
        """What `encode` takes for a training batch (dict with "images" [+ "labels"]). Default: its labels (None
        when it has none)."""
        return batch.get("labels")

    def training_noise(self, cond: dict, generator: torch.Generator) -> dict:
        """`cond` with the random inputs of the condition added, drawn from the training step's `generator` (so a
        resumed run repeats them). Default: `cond`, nothing to draw."""
        return cond

    # ------------------------------------------------------------------------------------------- construction
    @classmethod
    def build(cls, context: BuildContext) -> Conditioning:
        """The conditioning a training run of this kind uses, from its flags and data (`BuildContext`)."""
        raise NotImplementedError(f"{cls.__name__}.build")

    @classmethod
    def from_spec(cls, spec, modules: dict) -> Conditioning:
        """The conditioning of an export described by `spec` (a `ModelSpec`), with its loaded `modules`
        (`load_modules`, or a pipeline's components)."""
        raise NotImplementedError(f"{cls.__name__}.from_spec")

    @classmethod
    def load_modules(cls, task_dir: str, weights: str) -> dict:
        """The modules this kind keeps in an export folder, loaded and checked; `weights`: the UNet folder being
        loaded (unet/ or unet_training/), for modules trained with it. Default: none."""
        return {}

    @classmethod
    def params_from_components(cls, unet_config, modules: dict) -> tuple[ConditionParams, bool] | None:
        """(this kind's parameters, trained with classifier-free guidance) when a pipeline built from components
        alone (`modules`: slot_encoder, text_encoder, tokenizer) is of this kind, else None."""
        return None

    def params(self) -> ConditionParams:
        """Its entries of the model spec (`continual_diffusers.json`)."""
        return self.params_type()

    def modules(self) -> dict:
        """Its pipeline components (`ContinualDiffusionPipeline`'s keyword arguments). Default: none."""
        return {}

    @property
    def trained_module(self) -> torch.nn.Module | None:
        """A module that trains with the UNet, inside the denoiser (the slot encoder). Default: None."""
        return None

    @property
    def text_components(self) -> tuple | None:
        """(tokenizer, text_encoder) exported with each task, for kinds that encode prompts. Default: None."""
        return None

    def to(self, device) -> Conditioning:
        """Move the frozen modules it keeps outside the denoiser to `device`. Default: nothing to move."""
        return self

    # -------------------------------------------------------------------------------------------------- UNet
    @classmethod
    def unet_arguments(cls, spec) -> dict:
        """The diffusers UNet constructor arguments that make it take this condition, from a `UNetSpec`."""
        return {}

    def unet_fields(self) -> dict:
        """The `UNetSpec` fields of a UNet that takes this condition (`build_unet(UNetSpec(**fields, ...))`)."""
        return {"conditioning": self.kind}

    def unet_mismatch(self, config) -> str | None:
        """Why a UNet with this config (a dict or a diffusers FrozenDict) cannot take the condition, as the end of a
        sentence that starts "the UNet ..."; None when it can. Default: it must have no class embeddings."""
        have = _get(config, "num_class_embeds")
        if have is not None or _get(config, "class_embed_type") is not None:
            return (
                f"has {have} class embeddings but the conditioning is {self.kind!r} (num_class_embeds must be null): "
                "use a class conditioning, or a UNet without class embeddings"
            )
        return None

    # ---------------------------------------------------------------------------------------------- the run
    @classmethod
    def check_labels(cls, tasks) -> None:
        """Refuse training tasks (a `TaskSequence`) whose labels this kind cannot train on (checked before the
        conditioning is built). Default: labels of `label_kind`, when it has one."""
        if cls.label_kind is not None and tasks.label_kind != cls.label_kind:
            raise UserInputError(
                f"{cls.kind} conditioning needs {LABEL_NAMES[cls.label_kind]}, but the tasks have {tasks.label_kind}"
            )

    def check_training(self, tasks, validation_prompts) -> None:
        """Refuse training tasks and end-of-task prompts this conditioning, as built, cannot train on (after
        `check_labels`). Default: nothing more."""

    @classmethod
    def check_run_options(cls, opts) -> None:
        """Refuse what the training run's other options (the CLI's `RunOptions`) cannot do with this kind."""

    # ---------------------------------------------------------------------------------------------- sampling
    def rows(self, spec, requested, argument: str) -> list:
        """One label per sampled row: `requested` (the caller's `argument`, e.g. "--class_labels" or
        "class_labels") checked against the model, or the kind's default rows when None. Default: one row of
        unconditional samples."""
        return [None]

    def concepts(self, spec, text: str, flag: str) -> list:
        """The K concepts of a composition written as `text` (`flag`: where it came from). Default: this kind
        cannot be composed."""
        raise UserInputError(NOT_COMPOSABLE.format(self.description))

    def image_rows(self, model, images: torch.Tensor) -> list:
        """Rows that reconstruct `images` (B, C, H, W) with `model` (kinds with `reconstructs_references`)."""
        raise NotImplementedError(f"{type(self).__name__} does not reconstruct images")


NOT_COMPOSABLE = "composition needs a class- or text-conditioned model; this one is {}"
LABEL_NAMES = {"class": "integer class labels", "text": "caption labels"}


def _get(config, key: str):
    """A key of a UNet config: a dict, or the `config` FrozenDict of a diffusers model."""
    return config.get(key) if hasattr(config, "get") else getattr(config, key, None)


def check_unet_takes(conditioning: Conditioning, config, where: str, hint: str = "") -> None:
    """`UserInputError(f"{where} {why}{hint}")` when the UNet config cannot take `conditioning` (`unet_mismatch`);
    `where` names the UNet ("the UNet", "<task_dir>: the UNet", "--model_config_name_or_path <file>: the UNet")."""
    why = conditioning.unet_mismatch(config)
    if why is not None:
        raise UserInputError(f"{where} {why}{hint}")


def checked_entry(raw: dict, key: str, bounds: b.Bounds, where: str, default=None):
    """A number entry of the metadata object of file `where`, within `bounds` (one line naming it otherwise)."""
    return bounds.check(f"{where}: {key}", raw.get(key, default))
