"""Model cards (Hub README.md with YAML front matter) of a run's task exports and of the run itself, with the
metrics of the end-of-task evaluation so far."""

from __future__ import annotations

import os

from ..models.spec import ModelSpec
from ..utils.jsonfile import read_json_object

CARD_FILE = "README.md"
LICENSE = "apache-2.0"  # the license of continual-diffusers (LICENSE); a card for other data can pass its own
BUNDLED_DIGITS = "scikit-learn digits (bundled)"
DIGITS = 4  # significant digits of every metric value in a card
SIZES = ("num_generated", "num_real")  # sample counts behind FID and KID: stated in the table, not eval results


def write_model_cards(trainer, task) -> tuple[str, str]:
    """README.md model cards in output_dir/task_<id>/ and output_dir/ (the metrics of the evaluation so far)."""
    cfg = trainer.cfg
    history = trainer.task_eval.report.history if trainer.task_eval is not None else []
    names = getattr(trainer.task_eval, "display_name", None)  # the evaluation's names for its metrics
    spec = trainer.spec.replace(seen_tasks=tuple(trainer.position.seen_tasks))
    training = training_summary(cfg.to_dict(), trainer.strategy.name)
    task_dir = os.path.join(cfg.output_dir, f"task_{task.task_id}")
    hub = {"datasets": run_datasets(cfg.output_dir)}  # no folder names: a run's cards do not depend on where it ran
    cards = (
        (os.path.join(task_dir, CARD_FILE), model_card(spec, training, history, task.task_id, names, **hub)),
        (os.path.join(cfg.output_dir, CARD_FILE), model_card(spec, training, history, metric_name=names, **hub)),
    )
    for path, text in cards:
        with open(path, "w") as fh:
            fh.write(text)
    return cards[0][0], cards[1][0]


def training_summary(config: dict, strategy: str) -> dict:
    """The training settings worth a reader's time (scalars of `TrainConfig`, without paths), the end-of-task
    sampler (`validation`, without the prompts) and the strategy."""
    skip = {"output_dir", "validation_prompts"}
    summary = {k: v for k, v in config.items() if k not in skip and (v is None or isinstance(v, int | float | str))}
    sampler = {k: v for k, v in config.get("validation", {}).items() if k not in skip}
    return {"strategy": strategy, **summary, **({"validation": sampler} if sampler else {})}


def run_datasets(output_dir: str) -> list[str]:
    """The card's `datasets`: the name of the training task file the run's config.json records ("args"), without
    its folders (a local file, not a Hub dataset id); the bundled digits for a run on them; [] when unknown (a run
    of the Python API writes no config.json)."""
    path = os.path.join(output_dir, "config.json")
    if not os.path.isfile(path):
        return []
    args = read_json_object(path).get("args")
    data_path = args.get("data_path") if isinstance(args, dict) else None
    if isinstance(data_path, str) and data_path:
        return [os.path.basename(os.path.normpath(data_path))]
    return [BUNDLED_DIGITS] if isinstance(args, dict) else []


def model_card(
    spec: ModelSpec, training: dict, history: list[dict], task_id: int | None = None, metric_name=None, *,
    datasets: list[str] = (), run_name: str = "continual-diffusers", license: str = LICENSE,
) -> str:  # fmt: skip
    """A Hub model card (YAML front matter + markdown) for one task export (`task_id`) or the whole run.
    `metric_name`: metric key → the name a reader sees (the end-of-task evaluation's `display_name`); default: the
    key. `datasets`: the training data's names (`run_datasets`); `license`: the card's license field. The latest
    evaluation's per-task metrics (rounded to `DIGITS` significant digits, as everywhere in the card) go into the
    Hub's model-index as eval results, one per metric and task, under the model name `run_name`[/task_<k>]."""
    from huggingface_hub import ModelCardData

    seen = list(spec.seen_tasks)
    classes = spec.seen_classes()
    kind, energy, latent = spec.conditioning, spec.energy_type, spec.latent is not None
    tags = ["continual-diffusers", "continual-learning", "diffusers", f"strategy-{training['strategy']}"]
    tags += [f"energy-{energy}" if energy else "score-based", f"conditioning-{kind}"]
    tags += ["latent-diffusion"] if latent else ["diffusers:ContinualDiffusionPipeline"]
    meta = spec.to_json()
    pipeline_tag = "text-to-image" if spec.kind.call_argument == "prompt" else "unconditional-image-generation"
    data = ModelCardData(
        library_name="diffusers",
        pipeline_tag=pipeline_tag,
        tags=tags,
        tasks_seen=seen,
        classes_seen=classes,
        classes_per_task={str(t): list(spec.classes_per_task.get(t, ())) for t in seen},
        model_config={k: meta.get(k) for k in MODEL_KEYS if meta.get(k) is not None},
        training_config=training,
        continual_metrics=rounded_history(history),
        license=license,
        datasets=list(datasets) or None,
        model_name=f"{run_name}/task_{task_id}" if task_id is not None else run_name,
        eval_results=eval_results(history, data_name(datasets), metric_name or str, pipeline_tag) or None,
    )
    where = f"task_{task_id}" if task_id is not None else "the run"
    what = f"after task {task_id} of a continual run" if task_id is not None else "one folder per task trained"
    body = _card_body(spec, training, history, seen, classes, where, what, metric_name or str)
    return f"---\n{data.to_yaml()}\n---\n\n" + body


def _round(value: float) -> float:
    return float(f"{value:.{DIGITS}g}")


def rounded_history(history: list[dict]) -> list[dict]:
    """The evaluation history with every value rounded to `DIGITS` significant digits."""
    return [
        {**entry, "metrics": {m: {t: _round(v) for t, v in values.items()} for m, values in entry["metrics"].items()}}
        for entry in history
    ]


def data_name(datasets) -> str:
    return datasets[0] if datasets else "task file"


def eval_results(history: list[dict], dataset: str, metric_name, task_type: str) -> list:
    """The latest evaluation as `huggingface_hub.EvalResult`s (the model-index form): one per metric and task
    ("all seen tasks" for the metrics of the pooled samples of unconditional models), values rounded."""
    from huggingface_hub import EvalResult

    if not history:
        return []
    latest = history[-1]
    results = []
    for metric, values in sorted(latest["metrics"].items()):
        if metric in SIZES:
            continue
        for task, value in values.items():
            split = "all seen tasks" if str(task) == "0" else f"task {task}"
            results.append(
                EvalResult(
                    task_type=task_type,
                    dataset_type=dataset,
                    dataset_name=f"{dataset}, {split}",
                    dataset_split=split,
                    metric_type=metric,
                    metric_name=metric_name(metric),
                    metric_value=_round(value),
                    task_name=f"continual evaluation after task {latest['after_task']}",
                )
            )
    return results


MODEL_KEYS = ("conditioning", "num_classes", "classifier_free_guidance", "energy_type", "prediction_type",
              "resolution", "in_channels", "validation_prompts", "latent")  # fmt: skip
# How the usage example passes each pipeline keyword (`Conditioning.call_argument`).
CALL_EXAMPLES = {"class_labels": "class_labels=[0, 1]", "prompt": 'prompt="..."', "slots": "slots=images"}


def _card_body(spec: ModelSpec, training, history, seen, classes, where, what, metric_name) -> str:
    kind, energy = spec.conditioning, spec.energy_type
    model = f"{'energy (' + energy + ')' if energy else 'score'} model, {kind} conditioning"
    path = '"path/to/task_k"' if where == "the run" else '"path/to/this/folder"'
    call = CALL_EXAMPLES.get(spec.kind.call_argument, "")
    lines = [
        f"# Continual diffusion model: {where}",
        "",
        f"A diffusers {model} trained with continual-diffusers ({what}); strategy `{training['strategy']}`.",
        f"Tasks seen: {seen}." + (f" Classes seen: {classes}." if classes else ""),
        "",
        "## Usage",
        "",
        "```python",
        "from continual_diffusers import ContinualDiffusionPipeline",
        "",
        f'pipe = ContinualDiffusionPipeline.from_pretrained({path})  # a Hub repo: add subfolder="task_k" for a run',
        f"images = pipe({call + ', ' if call else ''}num_images_per_prompt=4, generator=0).images",
        "```",
        "",
    ]
    if not spec.kind.conditional and not energy and spec.latent is None:
        lines += ["It also loads with stock diffusers: `DDPMPipeline.from_pretrained(...)`.", ""]
    lines += [
        "`unet/` holds the inference weights: the EMA average when trained with EMA (then `unet_training/` holds the "
        "training weights), as diffusers' training examples export them.",
        "",
        "## Metrics so far",
        "",
    ]
    lines += _metric_lines(history, metric_name) or ["No end-of-task evaluation was run (`--eval_every_task`)."]
    return "\n".join(lines) + "\n"


def _metric_lines(history: list[dict], metric_name) -> list[str]:
    rows = []
    for entry in history:
        for metric, values in sorted(entry["metrics"].items()):
            cells = ", ".join(f"{task}: {value:.{DIGITS}g}" for task, value in values.items())
            rows.append(f"| {entry['after_task']} | {metric_name(metric)} | {cells} |")
    return ["| after task | metric | per task |", "|---|---|---|", *rows] if rows else []
