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

A recipe is a list of `main_ddpm.py` flags on top of `BASE` (the README strategies protocol), so any row can be
rerun by hand: the command of every run is printed, and its output dir holds the models, samples and report/.
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
from compare_strategies import ensure_oracle, fmt, run_cached

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The README strategies protocol before this study: CFG, one EMA over the sequence, lr 1e-3 with 20 warm-up steps,
# linear betas, ε-prediction, guidance 2 (the evaluation sampler is this script's --scheduler; it was DDIM-50).
BASE = [
    "--classifier_free_guidance", "--uncond_p", "0.1", "--guidance_scale", "2", "--use_ema", "--ema_scope", "sequence",
    "--learning_rate", "1e-3", "--lr_warmup_steps", "20", "--eval_every_task", "--checkpointing_steps", "0",
    "--logger", "none", "--num_samples", "4",
]  # fmt: skip
NEW = ["--ema_scope", "task"]  # the CLI default since this study
V_PRED = ["--prediction_type", "v_prediction"]
CONSTANT_LR = ["--lr_scheduler", "constant_with_warmup"]
COSINE = ["--ddpm_beta_schedule", "squaredcos_cap_v2"]
LR_2E3 = ["--learning_rate", "2e-3"]
ENERGY = ["--energy_based_training", "--energy_score_type", "dae"]
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
    # The independent ~150-line DDPM of the recipe issue: cosine betas, AdamW 2e-3 constant, no EMA, attention at 4×4.
    "independent": [*COSINE, *LR_2E3, *CONSTANT_LR, "--no_use_ema", "--block_out_channels", "32", "64"],
    # Axes added after the sampler change, on the new default recipe (BASE with one EMA per task).
    "zero_snr_v": [*NEW, *V_PRED, "--rescale_betas_zero_snr"],  # Lin et al. 2024: needs v-prediction
    "v_pred_new": [*NEW, *V_PRED],  # the control of zero_snr_v
    "stratified_t": [*NEW, "--timestep_sampling", "stratified"],
    "logit_normal_t": [*NEW, "--timestep_sampling", "logit_normal"],
    "attn_4x4_new": [*NEW, "--block_out_channels", "32", "64"],  # two levels: attention at 4×4 instead of 2×2
    # Energy models (ε̂ = ∇ₓE, double backward) on the new default recipe, and changes for them.
    "energy_dae": [*NEW, *ENERGY],
    "energy_dae_no_ema": [*ENERGY, "--no_use_ema"],
    "energy_dae_lr2e-3": [*NEW, *ENERGY, *LR_2E3],
    "energy_dae_const": [*NEW, *ENERGY, *CONSTANT_LR],
    "energy_dae_cos": [*NEW, *ENERGY, *COSINE],
}
SETTINGS = ("single", "naive", "joint")
NUM_STEPS_DEFAULT = 300


def task_one_files(data_dir: str) -> tuple[str, str]:
    """Train/test task files holding only task 1 of the bundled split digits (written once)."""
    from continual_diffusers.data import TaskSequence, load_split_digits, save_tasks

    paths = tuple(os.path.join(data_dir, f"digits_task1_{split}.npz") for split in ("train", "test"))
    if not all(os.path.isfile(p) for p in paths):
        os.makedirs(data_dir, exist_ok=True)
        for sequence, path in zip(load_split_digits(), paths, strict=True):
            save_tasks(path, TaskSequence((sequence[1],)))
    return paths


def setting_flags(setting: str, data_dir: str) -> list[str]:
    if setting == "single":
        train, test = task_one_files(data_dir)
        return ["--data_path", train, "--test_data_path", test]
    return ["--buffer_type", "all_data"] if setting == "joint" else []


def recipe_flags(name: str) -> list[str]:
    """BASE with the recipe's changes (`--no_use_ema` removes the EMA flags of BASE; a later flag overrides)."""
    changes = RECIPES[name]
    base = BASE
    if "--no_use_ema" in changes:
        i = BASE.index("--use_ema")
        base = BASE[:i] + BASE[i + 3 :]  # --use_ema --ema_scope sequence
    return [*base, *(c for c in changes if c != "--no_use_ema")]


def read_metrics(out: str) -> dict:
    """R[1][1], the mean diagonal R[k][k] and the final average accuracy from the run's report."""
    with open(os.path.join(out, "report", "metrics.json")) as fh:
        data = json.load(fh)
    rows = data["matrices"]["accuracy"]  # row k: R[k][1..k], the tasks seen after training task k
    return {
        "r11": float(rows[0][0]),
        "diagonal": float(np.mean([row[-1] for row in rows])),
        "final": data["summary"]["accuracy"]["average_final"],
        "frechet": data["summary"]["frechet"]["average_final"],
    }


def run_one(recipe: str, setting: str, seed: int, args) -> dict:
    out = os.path.join(args.output_dir, setting, f"{recipe.replace('/', '_')}_seed{seed}")
    cmd = [
        sys.executable, os.path.join(ROOT, "main_ddpm.py"), "--output_dir", out, "--seed", str(seed),
        "--max_train_steps", str(args.steps_per_task), "--train_batch_size", str(args.batch_size),
        "--eval_num_samples", str(args.eval_num_samples), "--oracle_path", args.oracle_path,
        "--scheduler", args.scheduler, "--num_inference_steps", str(args.num_inference_steps),
        *setting_flags(setting, os.path.join(args.output_dir, "data")), *recipe_flags(recipe),
    ]  # fmt: skip
    what = f"{recipe} / {setting} / seed {seed}"
    row = run_cached(cmd, out, lambda run, seconds: {**read_metrics(run), "seconds": seconds}, what)
    print(f"  {what}: {json.dumps(row)}", flush=True)
    return row


def table(results: dict[str, dict[str, list[dict]]]) -> str:
    """One row per recipe; per setting its headline metric (mean ± std over seeds)."""
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
            cells.append(fmt([r[headline[s][0]] for r in rows]) if rows else "–")
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
    ensure_oracle(args.oracle_path)
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
