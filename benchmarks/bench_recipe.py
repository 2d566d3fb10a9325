"""The training recipe at a fixed budget of samples seen: how well does the model learn each task?

Every continual-learning number assumes the model learned each task before it is asked to keep it. This study runs
`main_ddpm.py` on the bundled split digits (class-conditional score DDPM with CFG) with one recipe change at a time,
the same optimizer-step budget and batch for all, and several seeds. Settings:

- `single`: task 1 alone → R[1][1], the oracle accuracy of the model's samples of its own two classes (the cheap
  screen: one task instead of five);
- `naive`: the 5 tasks one after the other → the mean of the diagonal R[k][k] (each task right after training it)
  and the final average accuracy;
- `joint`: the 5 tasks with all earlier data replayed (`--buffer_type all_data`) → the final average accuracy.

    python benchmarks/bench_recipe.py --settings single --seeds 0 1 --recipes baseline cosine lr_2e-3
    python benchmarks/bench_recipe.py --settings naive joint --seeds 0 1 2 --recipes baseline best
    python benchmarks/bench_recipe.py --merge outputs/bench_recipe/results.json other/results.json

A recipe is a list of `main_ddpm.py` flags on top of `BASE` (the strategies protocol in CHANGELOG.md's history), so any
row can be rerun by hand: the command of every run is printed, its output dir holds the models, samples and report/.
Wall time is the median per run, evaluation included; compare it only between runs of one invocation (these
machines are shared). Per-step cost of a wider UNet: `benchmarks/bench_training.py --resolution 8 --widths ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np
from compare_strategies import ensure_oracle, run_cached
from strategy_table import ci

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The strategies protocol before this study (CHANGELOG.md, History): CFG, one EMA over the sequence, lr 1e-3 with
# 20 warm-up steps, linear betas, ε-prediction, guidance 2 (the evaluation sampler is this script's --scheduler;
# it was DDIM-50).
# ε is explicit because v-prediction is the CLI default since this study: every recipe below keeps its meaning.
BASE = [
    "--classifier_free_guidance", "--uncond_p", "0.1", "--guidance_scale", "2", "--use_ema", "--ema_scope", "sequence",
    "--learning_rate", "1e-3", "--lr_warmup_steps", "20", "--eval_every_task", "--checkpointing_steps", "0",
    "--logger", "none", "--num_samples", "4", "--prediction_type", "epsilon",
]  # fmt: skip
NEW = ["--ema_scope", "task"]  # the CLI default since this study
V_PRED = ["--prediction_type", "v_prediction"]
CONSTANT_LR = ["--lr_scheduler", "constant_with_warmup"]
COSINE = ["--ddpm_beta_schedule", "squaredcos_cap_v2"]
LR_2E3 = ["--learning_rate", "2e-3"]
ENERGY = ["--energy_based_training", "--energy_score_type", "dae"]
NO_CFG, TEXT = "--no_cfg", "--text"  # markers handled by `recipe_flags` / `run_one`, not main_ddpm flags
CFG_FLAGS = ["--classifier_free_guidance", "--uncond_p", "0.1", "--guidance_scale", "2"]
EMA_FLAGS = ["--use_ema", "--ema_scope", "sequence"]
# One change at a time against BASE (the axes of the study), and combinations of the changes that helped.
RECIPES: dict[str, list[str]] = {
    "baseline": [],
    # Noise schedule.
    "cosine": COSINE,
    "scaled_linear": ["--ddpm_beta_schedule", "scaled_linear"],
    # Prediction type and loss weighting.
    "v_pred": V_PRED,
    "x0_pred": ["--prediction_type", "sample"],
    "min_snr_5": ["--snr_gamma", "5"],
    # Optimiser.
    "lr_2e-3": LR_2E3,
    "lr_5e-4": ["--learning_rate", "5e-4"],
    "constant_lr": CONSTANT_LR,
    "no_warmup": ["--lr_warmup_steps", "0"],
    # EMA: off, or a shorter memory (the default decay 1 − (1+n)^−0.75 averages over ~250 steps by step 1500).
    "no_ema": ["--no_use_ema"],
    "ema_power_2/3": ["--ema_power", "0.6667"],
    "ema_max_0.995": ["--ema_max_decay", "0.995"],
    "ema_per_task": NEW,
    # UNet capacity and layout.
    "wide": ["--block_out_channels", "64", "128", "128"],
    "two_levels": ["--block_out_channels", "32", "64"],
    "two_layers": ["--layers_per_block", "2"],
    # CFG training and sampling.
    "uncond_0.2": ["--uncond_p", "0.2"],
    "guidance_3": ["--guidance_scale", "3"],
    "guidance_1": ["--guidance_scale", "1"],
    # Combinations of the single changes that helped most in the screen (v-prediction, a constant LR, a higher LR,
    # cosine betas, no EMA).
    "v_const": [*V_PRED, *CONSTANT_LR],
    "v_const_lr2e-3": [*V_PRED, *CONSTANT_LR, *LR_2E3],
    "v_const_cos": [*V_PRED, *CONSTANT_LR, *COSINE],
    "v_const_cos_lr2e-3": [*V_PRED, *CONSTANT_LR, *COSINE, *LR_2E3],
    "v_const_cos_lr2e-3_no_ema": [*V_PRED, *CONSTANT_LR, *COSINE, *LR_2E3, "--no_use_ema"],
    # An independent ~150-line DDPM as reference: cosine betas, AdamW 2e-3 constant, no EMA, attention at 4×4.
    "independent": [*COSINE, *LR_2E3, *CONSTANT_LR, "--no_use_ema", "--block_out_channels", "32", "64"],
    # Axes added after the sampler change, on the new default recipe (BASE with one EMA per task).
    "zero_snr_v": [*NEW, *V_PRED, "--rescale_betas_zero_snr"],  # Lin et al. 2024: needs v-prediction
    "v_pred_new": [*NEW, *V_PRED],  # the control of zero_snr_v
    "stratified_t": [*NEW, "--timestep_sampling", "stratified"],
    "logit_normal_t": [*NEW, "--timestep_sampling", "logit_normal"],
    "attn_4x4_new": [*NEW, "--block_out_channels", "32", "64"],  # two levels: attention at 4×4 instead of 2×2
    "offset_noise_0.1": [*NEW, "--noise_offset", "0.1"],  # Guttenberg 2023: learn each image's mean colour
    # The digits upsampled to 16×16 (the held-out check's size): the default UNet of 16 px has 3 levels (16, 8, 4).
    "res16": [*NEW, "--resolution", "16"],
    "res16_v": [*NEW, *V_PRED, "--resolution", "16"],
    "v_const_lr2e-3_new": [*NEW, *V_PRED, *CONSTANT_LR, *LR_2E3],
    "zero_snr_v_const_lr2e-3": [*NEW, *V_PRED, *CONSTANT_LR, *LR_2E3, "--rescale_betas_zero_snr"],
    # Energy models (ε̂ = ∇ₓE, double backward) on the new default recipe, and changes for them.
    "energy_dae": [*NEW, *ENERGY],
    "energy_dae_no_ema": [*ENERGY, "--no_use_ema"],
    "energy_dae_lr2e-3": [*NEW, *ENERGY, *LR_2E3],
    "energy_dae_const": [*NEW, *ENERGY, *CONSTANT_LR],
    "energy_dae_cos": [*NEW, *ENERGY, *COSINE],
    "energy_dae_lr2e-3_const": [*NEW, *ENERGY, *LR_2E3, *CONSTANT_LR],
    # Other conditionings on the new default recipe. "uncond": no labels, judged by the share of samples the oracle
    # puts in the task's classes (the unconditional R[k][k]). "text": captions "a handwritten <c's name>" through a
    # random, untrained CLIP text encoder (offline, built like the tests'); the run's samples are judged afterwards
    # here, one caption per class, because per-task metrics in the trainer need class labels.
    "uncond": [*NEW, NO_CFG, "--conditioning", "none"],
    "text": [*NEW, TEXT],
}
SETTINGS = ("single", "naive", "joint")
NUM_STEPS_DEFAULT = 300


def caption_tasks(tasks):
    """The same images with a caption per image instead of its class id: "a handwritten <name of c>"."""
    from continual_diffusers.data import Task, TaskSequence

    return TaskSequence(tuple(Task(t.task_id, t.images, [caption(int(c)) for c in t.labels]) for t in tasks))


DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def caption(class_id: int) -> str:
    """Words, not digits: with a character-level tokenizer and a random text encoder, "…digit 0" and "…digit 1"
    differ in one token and the model could not tell them apart (R[1][1] 0.40, 1 seed)."""
    return f"a handwritten {DIGIT_NAMES[class_id]}"


def shapes_tasks(num_per_task: int, seed: int):
    """The shapes data split by shape (task k draws only shape k), labelled with the shape's index so that an oracle
    can be trained on it and judge samples (the task files of `continual_diffusers.data.shapes` have no labels)."""
    from continual_diffusers.data import Task, TaskSequence
    from continual_diffusers.data.shapes import SHAPES, make_shapes_tasks

    tasks, _ = make_shapes_tasks(len(SHAPES), num_per_task, resolution=16, split="shape", seed=seed)
    return TaskSequence(tuple(Task(t.task_id, t.images, [t.task_id - 1] * len(t)) for t in tasks))


def data_files(dataset: str, data_dir: str, text: bool) -> dict[str, str]:
    """Train/test task files of the whole sequence ("train", "test") and of task 1 alone ("task1_train", …),
    written once into `data_dir`: the split digits (as captions for text models) or the labelled shapes."""
    from continual_diffusers.data import TaskSequence, load_split_digits, save_tasks

    name = "shapes" if dataset == "shapes" else ("digits_words" if text else "digits")
    files = {k: os.path.join(data_dir, f"{name}_{k}.npz") for k in ("train", "test", "task1_train", "task1_test")}
    if not all(os.path.isfile(p) for p in files.values()):
        os.makedirs(data_dir, exist_ok=True)
        if dataset == "shapes":
            sequences = (shapes_tasks(512, seed=0), shapes_tasks(128, seed=1))
        else:
            sequences = load_split_digits()
        for split, sequence in zip(("train", "test"), sequences, strict=True):
            sequence = caption_tasks(sequence) if text else sequence
            save_tasks(files[split], sequence)
            save_tasks(files[f"task1_{split}"], TaskSequence((sequence[1],)))
    return files


def setting_flags(setting: str, files: dict[str, str], text: bool) -> list[str]:
    prefix = "task1_" if setting == "single" else ""
    train, test = files[prefix + "train"], files[prefix + "test"]
    flags = ["--data_path", train] + ([] if text else ["--test_data_path", test])
    return flags + (["--buffer_type", "all_data"] if setting == "joint" else [])


def recipe_flags(name: str) -> list[str]:
    """BASE with the recipe's changes (a later flag overrides): `--no_use_ema` removes BASE's EMA flags, `--no_cfg`
    its CFG flags; `--text` is handled by `run_one`."""
    changes = RECIPES[name]
    base = drop_sequences(BASE, [EMA_FLAGS] * ("--no_use_ema" in changes) + [CFG_FLAGS] * (NO_CFG in changes))
    return [*base, *(c for c in changes if c not in ("--no_use_ema", NO_CFG, TEXT))]


def drop_sequences(flags: list[str], sequences: list[list[str]]) -> list[str]:
    """`flags` without each of `sequences` (each must occur as a contiguous run)."""
    for seq in sequences:
        i = next(i for i in range(len(flags)) if flags[i : i + len(seq)] == seq)
        flags = flags[:i] + flags[i + len(seq) :]
    return flags


def read_metrics(out: str) -> dict:
    """R[1][1], the mean diagonal R[k][k] and the final average from the run's report: oracle accuracy for class
    models, the share of samples in the task's classes for unconditional ones."""
    with open(os.path.join(out, "report", "metrics.json")) as fh:
        data = json.load(fh)
    metric = "accuracy" if "accuracy" in data["matrices"] else "task_share"
    return diagonal_metrics(data["matrices"][metric]) | {
        "frechet": data["summary"].get("frechet", {}).get("average_final"),
    }


def diagonal_metrics(rows: list[list[float]]) -> dict:
    """rows[k-1] = R[k][1..k] (the tasks seen after training task k) → R[1][1], mean R[k][k], final average."""
    return {
        "r11": float(rows[0][0]),
        "diagonal": float(np.mean([row[-1] for row in rows])),
        "final": float(np.mean(rows[-1])),
    }


def text_metrics(out: str, args, class_test_path: str) -> dict:
    """Judge a text model's exports like the trainer judges class models: after each task k, `eval_num_samples`
    samples per seen task from its classes' captions (the classes of the class-labelled test file),
    accuracy = the oracle's label is the captioned class."""
    import torch

    from continual_diffusers.data import load_tasks
    from continual_diffusers.evaluation.classifier import load_oracle, predict
    from continual_diffusers.pipelines.loading import load_task_model
    from continual_diffusers.sampling.generate import SamplerOptions, generate_samples

    oracle, _ = load_oracle(args.oracle_path)
    classes_of = {t.task_id: sorted({int(c) for c in t.labels}) for t in load_tasks(class_test_path)}
    rows = []
    for k in range(1, len([d for d in os.listdir(out) if d.startswith("task_")]) + 1):
        model, conditioning, scheduler, spec = load_task_model(os.path.join(out, f"task_{k}"))
        options = SamplerOptions(args.scheduler, args.num_inference_steps, 2.0, seed=k)
        row = []
        for task in spec.seen_tasks:
            classes = classes_of[task]
            labels = [classes[j % len(classes)] for j in range(args.eval_num_samples)]
            images = generate_samples(model, conditioning, scheduler, [caption(c) for c in labels], options, "cpu")
            predicted, _ = predict(oracle, images.float())
            row.append(float((predicted == torch.tensor(labels)).float().mean()))
        rows.append(row)
    return diagonal_metrics(rows) | {"frechet": None}


def run_one(recipe: str, setting: str, seed: int, args) -> dict:
    out = os.path.join(args.output_dir, setting, f"{recipe.replace('/', '_')}_seed{seed}")
    text = TEXT in RECIPES[recipe]
    files = data_files(args.dataset, os.path.join(args.output_dir, "data"), text)
    cmd = [
        sys.executable, os.path.join(ROOT, "main_ddpm.py"), "--output_dir", out, "--seed", str(seed),
        "--max_train_steps", str(args.steps_per_task), "--train_batch_size", str(args.batch_size),
        "--scheduler", args.scheduler, "--num_inference_steps", str(args.num_inference_steps),
        *setting_flags(setting, files, text), *recipe_flags(recipe),
    ]  # fmt: skip
    if text:  # no trainer evaluation (it needs class labels): the exports are judged by `text_metrics`
        cmd = drop_sequences(cmd, [["--eval_every_task"]])
        cmd += ["--clip_text_pretrained_path", tiny_clip(args.output_dir), "--validation_prompts", caption(0)]
        class_files = data_files(args.dataset, os.path.join(args.output_dir, "data"), text=False)
        test = class_files["task1_test" if setting == "single" else "test"]
        summarize = lambda run, seconds: {**text_metrics(run, args, test), "seconds": seconds}  # noqa: E731
    else:
        cmd += ["--eval_num_samples", str(args.eval_num_samples), "--oracle_path", args.oracle_path]
        summarize = lambda run, seconds: {**read_metrics(run), "seconds": seconds}  # noqa: E731
    what = f"{recipe} / {setting} / seed {seed}"
    row = run_cached(cmd, out, summarize, what)
    print(f"  {what}: {json.dumps(row)}", flush=True)
    return row


def tiny_clip(output_dir: str) -> str:
    """A random, untrained CLIP text encoder with a byte-level tokenizer (the tests' offline builder), written once."""
    path = os.path.join(output_dir, "tiny_clip")
    if not os.path.isdir(os.path.join(path, "text_encoder")):
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from tiny_clip import write_tiny_clip

        write_tiny_clip(path, hidden_size=64, max_length=24)
    return path


def table(results: dict[str, dict[str, list[dict]]]) -> str:
    """One row per recipe; per setting its headline metric (mean ± 95 % CI over seeds)."""
    headline = {"single": ("r11", "R[1][1]"), "naive": ("diagonal", "naive mean R[k][k]"), "joint": ("final", "joint")}
    settings = [s for s in SETTINGS if any(s in r for r in results.values())]
    lines = [
        "| recipe | " + " | ".join(f"{headline[s][1]} ↑" for s in settings) + " | wall time / run | seeds |",
        "|---|" + "---|" * (len(settings) + 2),
    ]
    for recipe, by_setting in results.items():
        cells, seconds, seeds = [], [], set()
        for s in settings:
            rows = by_setting.get(s, [])
            cells.append(ci([r[headline[s][0]] for r in rows]) if rows else "–")
            seconds += [r["seconds"] for r in rows]
            seeds.add(len(rows))
        wall = f"{statistics.median(seconds):.0f} s" if seconds else "–"
        lines.append(f"| {recipe} | " + " | ".join(cells) + f" | {wall} | {'/'.join(map(str, sorted(seeds)))} |")
    return "\n".join(lines)


def merge(paths: list[str]) -> dict[str, dict[str, list[dict]]]:
    merged: dict[str, dict[str, list[dict]]] = {}
    for path in paths:
        with open(path) as fh:
            for recipe, by_setting in json.load(fh)["results"].items():
                for setting, rows in by_setting.items():
                    merged.setdefault(recipe, {}).setdefault(setting, []).extend(rows)
    return merged


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    p.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=["single"])
    p.add_argument(
        "--dataset",
        choices=["digits", "shapes"],
        default="digits",
        help="the bundled split digits, or the shapes data split by shape (4 tasks, labelled by shape for the oracle)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps_per_task", type=int, default=NUM_STEPS_DEFAULT, help="optimizer steps per task")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--eval_num_samples", type=int, default=60, help="oracle-judged samples per task")
    p.add_argument("--scheduler", default="ddpm", help="sampler of the evaluation samples (main_ddpm --scheduler)")
    p.add_argument("--num_inference_steps", type=int, default=25, help="its steps")
    p.add_argument("--output_dir", default=os.path.join(ROOT, "outputs", "bench_recipe"))
    p.add_argument("--oracle_path", default=None, help="default: <output_dir>/oracle (trained if absent)")
    p.add_argument("--merge", nargs="+", default=None, help="print the table of earlier results.json files")
    args = p.parse_args()
    if args.merge:
        print(table(merge(args.merge)))
        return
    args.oracle_path = args.oracle_path or os.path.join(args.output_dir, "oracle")
    os.makedirs(args.output_dir, exist_ok=True)
    data = data_files(args.dataset, os.path.join(args.output_dir, "data"), text=False)
    ensure_oracle(args.oracle_path, ("--data_path", data["train"], "--test_data_path", data["test"]))
    results: dict[str, dict[str, list[dict]]] = {}
    path = os.path.join(args.output_dir, "results.json")
    for setting in args.settings:
        for recipe in args.recipes:
            for seed in args.seeds:
                results.setdefault(recipe, {}).setdefault(setting, []).append(run_one(recipe, setting, seed, args))
                with open(path, "w") as fh:  # after every run, so an interrupted study keeps what it measured
                    json.dump({"args": vars(args), "results": results}, fh, indent=2)
    print(table(results))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
