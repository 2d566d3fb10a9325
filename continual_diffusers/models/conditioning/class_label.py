"""`ClassConditioning`: `class_labels=` (B,) long into the UNet's class-embedding table. The classifier-free
guidance null label is the reserved index `num_classes` (models/unet.py: the table has `num_classes + 1` rows)."""

from __future__ import annotations

from typing import Literal

import torch

from ...utils import bounds as b
from ...utils.errors import UserInputError
from .base import BuildContext, Conditioning, ConditionParams, _get, checked_entry


class ClassParams(ConditionParams):
    """`num_classes` class ids, and `null_class_index` = num_classes when trained with classifier-free guidance."""

    json_keys = ("num_classes", "null_class_index")

    def __init__(self, num_classes: int, null_class: bool):
        self.num_classes, self.null_class = num_classes, null_class

    @property
    def class_ids(self) -> int:
        return self.num_classes

    @classmethod
    def from_json(cls, raw: dict, where: str, refuse) -> ClassParams:
        num_classes = checked_entry(raw, "num_classes", b.NUM_CLASSES, where, default=0)
        null_index = raw.get("null_class_index")
        if null_index is not None and (isinstance(null_index, bool) or null_index != num_classes):
            raise refuse(f"null_class_index must be null or num_classes ({num_classes}), got {b.shown(null_index)}")
        return cls(num_classes, null_index is not None)

    def to_json(self) -> dict:
        return {"num_classes": self.num_classes, "null_class_index": self.num_classes if self.null_class else None}


class ClassConditioning(Conditioning):
    kind: Literal["class"] = "class"
    description = "class-conditional"
    label_kind = auto_label_kind = "class"
    call_argument = "class_labels"
    oracle_evaluation = "per_class"
    params_type = ClassParams
    model_flag = ("num_class_labels", "the classes of a class-conditional model")

    def __init__(self, num_classes: int, null_class: bool):
        self.num_classes = num_classes
        self.supports_null = null_class
        self.null_index = num_classes if null_class else None

    def encode(self, labels: torch.Tensor, device: torch.device) -> dict:
        labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise UserInputError(
                f"class label out of range [0, {self.num_classes}): got {labels.min().item()}..{labels.max().item()}; "
                "set --num_class_labels to the number of classes over all tasks"
            )
        return {"class_labels": labels}

    def null(self, batch_size: int, device: torch.device) -> dict:
        if self.null_index is None:
            raise ValueError("this class-conditional model was trained without classifier-free guidance")
        return {"class_labels": torch.full((batch_size,), self.null_index, dtype=torch.long, device=device)}

    def drop(self, cond: dict, keep: torch.Tensor) -> dict:
        labels = cond["class_labels"]
        return {"class_labels": torch.where(keep, labels, torch.full_like(labels, self.null_index))}

    # ------------------------------------------------------------------------------------------- construction
    @classmethod
    def build(cls, context: BuildContext) -> ClassConditioning:
        """--num_class_labels (default: the data's number of classes), the null class with CFG."""
        num_classes = getattr(context.model, "num_class_labels", None) or context.tasks.num_classes
        return cls(num_classes, null_class=context.classifier_free_guidance)

    @classmethod
    def from_spec(cls, spec, modules: dict) -> ClassConditioning:
        return cls(spec.condition.num_classes, null_class=spec.condition.null_class)

    @classmethod
    def params_from_components(cls, unet_config, modules: dict) -> tuple[ClassParams, bool] | None:
        """A UNet with class embeddings: that many classes, no CFG (the null row cannot be told from a class)."""
        classes = _get(unet_config, "num_class_embeds")
        return (ClassParams(classes, null_class=False), False) if classes else None

    def params(self) -> ClassParams:
        return ClassParams(self.num_classes, self.supports_null)

    # -------------------------------------------------------------------------------------------------- UNet
    @classmethod
    def unet_arguments(cls, spec) -> dict:
        if spec.num_classes < 1:
            raise UserInputError("class-conditional UNet needs --num_class_labels >= 1")
        return {"num_class_embeds": spec.num_classes + int(spec.null_class)}

    def unet_fields(self) -> dict:
        return {"conditioning": self.kind, "num_classes": self.num_classes, "null_class": self.supports_null}

    def unet_mismatch(self, config) -> str | None:
        want, have = self.num_classes + int(self.supports_null), _get(config, "num_class_embeds")
        if have != want:
            null = " + the CFG null class" if self.supports_null else ""
            return f"has num_class_embeds={have} but {self.num_classes} classes{null} need num_class_embeds={want}"
        if _get(config, "class_embed_type") is not None:
            return (
                f"has class_embed_type={_get(config, 'class_embed_type')!r}; class conditioning uses the "
                "class-embedding table (class_embed_type null)"
            )
        return None

    # ---------------------------------------------------------------------------------------------- the run
    def check_training(self, tasks, validation_prompts) -> None:
        if tasks.num_classes > self.num_classes:
            raise UserInputError(
                f"the conditioning's num_classes={self.num_classes} (--num_class_labels {self.num_classes}) is "
                f"smaller than the data's {tasks.num_classes} classes (class ids up to {tasks.num_classes - 1})"
            )

    # ---------------------------------------------------------------------------------------------- sampling
    def rows(self, spec, requested, argument: str) -> list:
        """The requested class ids (default: every class of the tasks seen so far; all classes before any)."""
        classes = list(requested) if isinstance(requested, list | tuple) else [requested]
        if requested is None:
            classes = spec.seen_classes() or list(range(self.num_classes))
        bad = [c for c in classes if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < self.num_classes]
        if bad or not classes:
            raise UserInputError(f"{argument} {bad} out of range: the model has {self.num_classes} classes")
        return classes

    def concepts(self, spec, text: str, flag: str) -> list:
        """Comma-separated class ids, e.g. "2,3"."""
        try:
            concepts = [int(v) for v in text.split(",")]
        except ValueError:
            raise UserInputError(f"{flag} must be comma-separated class ids, got {text!r}") from None
        bad = [c for c in concepts if not 0 <= c < self.num_classes]
        if bad:
            raise UserInputError(f"{flag} {bad} out of range [0, {self.num_classes})")
        return concepts
