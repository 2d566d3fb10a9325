"""The rows a sampling call asks for, parsed and checked against the model once, for the pipeline and evaluate.py:
one label per row (a class id, a prompt, a slot set, or None), a composition's row, and the negative prompts of
guidance. The caller names its arguments its own way (`names`: evaluate.py's flags), so both say the same thing in
their own words; what a kind's labels are and default to is the kind's (`Conditioning.rows`)."""

from __future__ import annotations

from collections.abc import Mapping

from ..utils.errors import UserInputError

# The pipeline's keyword for each kind's labels (`Conditioning.call_argument`).
CALL_ARGUMENTS = ("class_labels", "prompt", "slots")


def composition_row(concepts, weights) -> str:
    """The name of a composition's row, e.g. "+3*2 -1*3"."""
    return " ".join(f"{w:+g}*{c}" for c, w in zip(concepts, weights))


def label_rows(conditioning, spec, given: Mapping, names: Mapping | None = None, composition=None) -> list:
    """One label per output row.

    Args:
        conditioning: the model's `Conditioning` (its kind checks and defaults the rows).
        spec: the model's `ModelSpec` (seen tasks, classes, validation prompts).
        given: the caller's labels keyed by `CALL_ARGUMENTS` (None: not given); only the kind's own may be given.
        names: how the caller calls them in messages (default: the pipeline's keywords).
        composition: a `CompositionOptions`: one row named after the composition instead of labels.
    """
    names = dict(names or {})
    wrong = [key for key, value in given.items() if value is not None and key != conditioning.call_argument]
    if wrong:
        raise UserInputError(f"{names.get(wrong[0], wrong[0])} does not fit this {conditioning.description} model")
    if composition is not None:
        if any(value is not None for value in given.values()):
            listed = " / ".join(names.get(k, k) for k in CALL_ARGUMENTS if k in given)
            raise UserInputError(f"composition replaces {listed}: give the concepts there")
        return [composition_row(composition.labels, composition.weights)]
    argument = conditioning.call_argument
    return conditioning.rows(spec, given.get(argument), names.get(argument, argument))


def as_list(value) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def negative_prompts(negatives, rows: list, per_row: int, conditioning, options, flag: str = ""):
    """One negative prompt per image (the null condition of guidance / composition) for `rows` of `per_row` images
    each, or None: one negative for all, or one per row. `flag` ("--" for evaluate.py) prefixes the names in
    messages, so the CLI and the pipeline say the same thing in their own words."""
    if not negatives:
        return None
    if conditioning.call_argument != "prompt":
        raise UserInputError(f"{flag}negative_prompt needs a text-conditioned model")
    if options.composition is None and options.guidance_scale == 1.0:
        raise UserInputError(
            f"{flag}negative_prompt acts through guidance: set {flag}guidance_scale != 1 on a model trained with "
            "classifier-free guidance"
        )
    negatives = as_list(negatives)
    if len(negatives) == 1:
        return negatives * (len(rows) * per_row)
    if options.composition is not None or len(negatives) != len(rows):
        raise UserInputError(
            f"{flag}negative_prompt has {len(negatives)} prompts for {len(rows)} prompt(s): give one, or one each"
        )
    return [n for n in negatives for _ in range(per_row)]
