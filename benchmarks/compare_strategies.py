"""Continual strategies on the bundled split digits (5 tasks × 2 classes), class-conditional score DDPM with CFG,
the same optimizer-step budget for every method, several seeds. Prints a markdown table of the final average
oracle accuracy, forgetting and feature FID (mean ± std over seeds) and the fraction of the naive → joint gap each
method closes in final average accuracy.

    python benchmarks/compare_strategies.py                         # the README table (≈ 1 h on 2 CPU cores)
    python benchmarks/compare_strategies.py --seeds 0 --methods naive replay_10pct joint --steps_per_task 50
    python benchmarks/compare_strategies.py --merge outputs/cmp_s0/results.json outputs/cmp_s1/results.json

Every run is a plain `main_ddpm.py` call (its flags are printed), so any row can be reproduced or inspected:
its output dir holds the per-task models, sample grids and report/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_TRAIN = 1437  # bundled digits training images (80 % of 1,797)

REPLAY_1 = ["--buffer_type", "reservoir", "--buffer_size", str(NUM_TRAIN // 100), "--retain_label_uniform_sampling"]
REPLAY_10 = ["--buffer_type", "reservoir", "--buffer_size", str(NUM_TRAIN // 10), "--retain_label_uniform_sampling"]
GENERATIVE = ["--strategy", "generative_replay", "--gr_pool_size", "1000", "--gr_num_inference_steps", "10"]
METHODS = {
    "naive": [],
    "replay_1pct": REPLAY_1,
    # The default mixing adds replays in proportion to the buffer (14 of 300 images → ~5 % of a batch); a fixed
    # half-replay batch gives the 14 images as much weight as the new task's data.
    "replay_1pct_ratio50": [*REPLAY_1, "--replay_ratio", "0.5"],
    # A fifth of every batch: between the default's ~5 % (no copies, 54 % of the gap) and half (copies).
    "replay_1pct_ratio20": [*REPLAY_1, "--replay_ratio", "0.2"],
    "replay_10pct": REPLAY_10,
    # λ sweep: with the per-sample Fisher, Σ F·Δθ² over a naive task switch is ~1e-4 on this model, so λ ~ 1e3–1e4
    # is where the penalty matches the denoising loss (~0.05).
    "ewc_1e2": ["--ewc_loss", "--lambda_ewc", "1e2"],
    "ewc_1e3": ["--ewc_loss", "--lambda_ewc", "1e3"],
    "ewc_1e4": ["--ewc_loss", "--lambda_ewc", "1e4"],
    "ewc_1e5": ["--ewc_loss", "--lambda_ewc", "1e5"],
    "ewc_1e6": ["--ewc_loss", "--lambda_ewc", "1e6"],
    # Online EWC (Schwarz et al. 2018): one running Fisher, γ = 1 (no decay: every task is kept equally).
    "ewc_online_1e4": ["--ewc_loss", "--lambda_ewc", "1e4", "--ewc_mode", "online"],
    "ewc_online_1e5": ["--ewc_loss", "--lambda_ewc", "1e5", "--ewc_mode", "online"],
    "ewc_1e4_replay_1pct": ["--ewc_loss", "--lambda_ewc", "1e4", *REPLAY_1],
    "ewc_1e5_replay_1pct": ["--ewc_loss", "--lambda_ewc", "1e5", *REPLAY_1],
    "ewc_online_1e5_replay_1pct": ["--ewc_loss", "--lambda_ewc", "1e5", "--ewc_mode", "online", *REPLAY_1],
    "ewc_1e4_replay_10pct": ["--ewc_loss", "--lambda_ewc", "1e4", *REPLAY_10],
    "si": ["--strategy", "si", "--si_lambda", "1.0"],
    "si_10": ["--strategy", "si", "--si_lambda", "10"],
    "si_100": ["--strategy", "si", "--si_lambda", "100"],
    "si_1e3": ["--strategy", "si", "--si_lambda", "1e3"],
    "generative_replay": GENERATIVE,
    "generative_distillation": [*GENERATIVE, "--distillation_weight", "3.0"],
    # Variants (Masip et al.): the EMA weights as teacher; distillation on pure-noise inputs (no sampling);
    # distillation plus a 1 % buffer of real images that is also distilled on.
    "distillation_ema_teacher": [*GENERATIVE, "--distillation_weight", "3.0", "--gr_teacher", "ema"],
    "distillation_noise": [
        "--strategy",
        "generative_replay",
        "--distillation_inputs",
        "noise",
        "--distillation_weight",
        "3.0",
    ],
    "distillation_replay_1pct": [
        *GENERATIVE,
        "--distillation_weight",
        "3.0",
        "--buffer_type",
        "reservoir",
        "--buffer_size",
        str(NUM_TRAIN // 100),
        "--retain_label_uniform_sampling",
    ],  # fmt: skip
    "joint": ["--buffer_type", "all_data"],
}
COMMON = [
    "--classifier_free_guidance",
    "--uncond_p",
    "0.1",
    "--guidance_scale",
    "2",
    "--use_ema",
    "--learning_rate",
    "1e-3",
    "--lr_warmup_steps",
    "20",
    "--eval_every_task",
    "--checkpointing_steps",
    "0",
    "--logger",
    "none",
    "--num_samples",
    "4",
]


def run_one(method: str, seed: int, args) -> dict:
    out = os.path.join(args.output_dir, f"{method}_seed{seed}")
    flags = METHODS[method]
    cmd = [
        sys.executable,
        os.path.join(ROOT, "main_ddpm.py"),
        "--output_dir",
        out,
        "--seed",
        str(seed),
        "--max_train_steps",
        str(args.steps_per_task),
        "--train_batch_size",
        str(args.batch_size),
        "--eval_num_samples",
        str(args.eval_num_samples),
        "--oracle_path",
        args.oracle_path,
        *COMMON,
        *flags,
    ]
    return add_memorisation(run_cached(cmd, out, summarize_run, f"{method} seed {seed}"), out, args, seed)


def run_cached(cmd: list[str], out: str, summarize, what: str) -> dict:
    """Run `cmd` (a main_ddpm.py call writing to `out`) and return `summarize(out, seconds)`; a finished run's row
    is kept in out/finished.json, so rerunning a study reuses it instead of training again."""
    print("$", " ".join(cmd[1:]), flush=True)
    done = os.path.join(out, "finished.json")
    if os.path.isfile(done):
        with open(done) as fh:
            return json.load(fh)
    start = time.time()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{what} failed:\n{result.stderr[-3000:]}")
    row = summarize(out, time.time() - start)
    with open(done, "w") as fh:
        json.dump(row, fh)
    return row


MEMORISATION = ("copy_fraction", "train_distance_ratio", "precision", "recall")


def summarize_run(out: str, seconds: float) -> dict:
    """The table's numbers of one finished run (its report/metrics.json and last checkpoint)."""
    with open(os.path.join(out, "report", "metrics.json")) as fh:
        summary = json.load(fh)["summary"]
    return {
        "accuracy": summary["accuracy"]["average_final"],
        "forgetting": summary["accuracy"]["forgetting"],
        "frechet": summary["frechet"]["average_final"],
        **{name: summary[name]["average_final"] for name in MEMORISATION if name in summary},
        "seconds": seconds,
        "teacher_seconds_per_task": teacher_seconds_per_task(out),
    }


def final_memorisation(out: str, oracle_path: str, num_samples: int, seed: int) -> dict[str, float]:
    """The memorisation measures of a run's last model, averaged over its tasks, for runs whose report predates
    them: the final row of the end-of-task evaluation, recomputed from the last export with the same evaluator
    (bundled digits, default sampler, guidance 2). Cached in out/memorisation.json."""
    cached = os.path.join(out, "memorisation.json")
    if os.path.isfile(cached):
        with open(cached) as fh:
            return json.load(fh)
    from continual_diffusers.data import load_split_digits
    from continual_diffusers.evaluation import ContinualEvaluator, load_oracle
    from continual_diffusers.pipelines.loading import load_task_model
    from continual_diffusers.sampling.generate import SamplerOptions

    last = max(int(name.split("_")[1]) for name in os.listdir(out) if re.fullmatch(r"task_\d+", name))
    model, conditioning, scheduler, spec = load_task_model(os.path.join(out, f"task_{last}"))
    oracle, oracle_meta = load_oracle(oracle_path)
    train, test = load_split_digits()
    options = SamplerOptions(guidance_scale=2.0 if spec.classifier_free_guidance else 1.0, seed=seed)
    evaluator = ContinualEvaluator(oracle, oracle_meta["resolution"], test, num_samples, options, train_tasks=train)
    row = evaluator.evaluate(model, conditioning, scheduler, list(spec.seen_tasks), spec.classes_per_task, "cpu")
    result = {name: statistics.mean(row[name].values()) for name in ("accuracy", *MEMORISATION)}
    with open(cached, "w") as fh:
        json.dump(result, fh)
    return result


def add_memorisation(row: dict, out: str, args, seed: int) -> dict:
    """`row` with the memorisation measures (from the run's report, else recomputed by `final_memorisation`)."""
    if all(name in row for name in MEMORISATION):
        return row
    measured = final_memorisation(out, args.oracle_path, args.eval_num_samples, seed)
    return {**row, **{name: measured[name] for name in MEMORISATION}}


def teacher_seconds_per_task(run_dir: str) -> float | None:
    """Generative replay's extra compute: seconds spent in the teacher (sampling + distillation forwards) per task
    that had a teacher (all but the first), from the run's last checkpoint; None for other methods."""
    checkpoints = sorted(
        (int(name.split("-")[1]), name) for name in os.listdir(run_dir) if re.fullmatch(r"checkpoint-\d+", name)
    )
    if not checkpoints:
        return None
    with open(os.path.join(run_dir, checkpoints[-1][1], "strategy.json")) as fh:
        state = json.load(fh)
    seconds = [v for k, v in state.items() if k.endswith("teacher_seconds")]
    tasks = len([name for name in os.listdir(run_dir) if name.startswith("task_")])
    return seconds[0] / max(tasks - 1, 1) if seconds else None


def ensure_oracle(path: str, data_flags: tuple[str, ...] = ()) -> None:
    """Train the oracle into `path` unless it is there (`data_flags`: train-oracle's --data_path/--test_data_path;
    default: the bundled digits)."""
    if not os.path.isfile(os.path.join(path, "config.json")):
        cmd = [sys.executable, "-m", "continual_diffusers.evaluation", "train-oracle", "--output_dir", path]
        subprocess.run([*cmd, *data_flags], cwd=ROOT, check=True)


def merge(paths: list[str]) -> dict[str, list[dict]]:
    merged: dict[str, list[dict]] = {}
    for path in paths:
        with open(path) as fh:
            saved = json.load(fh)
        for method, rows in saved["results"].items():
            for seed, row in zip(saved["args"]["seeds"], rows):
                run_dir = os.path.join(saved["args"]["output_dir"], f"{method}_seed{seed}")
                if "teacher_seconds_per_task" not in row and os.path.isdir(run_dir):  # results of older versions
                    row["teacher_seconds_per_task"] = teacher_seconds_per_task(run_dir)
                if os.path.isdir(run_dir):
                    row.update(add_memorisation(row, run_dir, argparse.Namespace(**saved["args"]), seed))
            merged.setdefault(method, []).extend(rows)
    return merged


def fmt(values: list[float], digits: int = 3) -> str:
    """mean ± sample standard deviation ("mean" alone for one value: one seed has no spread to show)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(results: dict[str, list[dict]]) -> str:
    acc = {m: statistics.mean(r["accuracy"] for r in rs) for m, rs in results.items()}
    gap = acc.get("joint", float("nan")) - acc.get("naive", float("nan"))
    lines = [
        "| method | seeds | final avg accuracy ↑ | forgetting ↓ | feature FID ↓ | copy fraction ↓ | "
        "distance to training / held-out's | recall ↑ | naive→joint gap closed | wall time / run | "
        "teacher time / task |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, rs in results.items():
        closed = (acc[m] - acc["naive"]) / gap if "naive" in acc and "joint" in acc and gap else float("nan")
        teacher = [r["teacher_seconds_per_task"] for r in rs if r.get("teacher_seconds_per_task") is not None]
        lines.append(
            f"| {m} | {len(rs)} | {fmt([r['accuracy'] for r in rs])} | {fmt([r['forgetting'] for r in rs])} | "
            f"{fmt([r['frechet'] for r in rs], 1)} | {fmt_optional(rs, 'copy_fraction')} | "
            f"{fmt_optional(rs, 'train_distance_ratio', 2)} | {fmt_optional(rs, 'recall', 2)} | {closed:.0%} | "
            f"{statistics.median(r['seconds'] for r in rs) / 60:.0f} min | "
            f"{f'{statistics.median(teacher):.0f} s' if teacher else '–'} |"
        )
    return "\n".join(lines)


def fmt_optional(rows: list[dict], name: str, digits: int = 3) -> str:
    """`fmt` of a column that results of older versions may lack ("–" when no row has it)."""
    values = [r[name] for r in rows if r.get(name) is not None]
    return fmt(values, digits) if values else "–"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps_per_task", type=int, default=300)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--eval_num_samples", type=int, default=60)
    p.add_argument("--output_dir", default=os.path.join(ROOT, "outputs", "compare_strategies"))
    p.add_argument("--oracle_path", default=None, help="default: <output_dir>/oracle (trained if absent)")
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="RESULTS_JSON",
        help="only print the table of several earlier results.json files (e.g. one per seed)",
    )
    args = p.parse_args()
    if args.merge:
        print(table(merge(args.merge)))
        return
    args.oracle_path = args.oracle_path or os.path.join(args.output_dir, "oracle")
    ensure_oracle(args.oracle_path)
    start = time.time()
    results = {}
    for m in args.methods:
        results[m] = [run_one(m, s, args) for s in args.seeds]
        with open(os.path.join(args.output_dir, "results.json"), "w") as fh:  # rewritten as rows finish
            json.dump({"args": vars(args), "results": results}, fh, indent=2)
    print(table(results))
    print(f"\nwall time {time.time() - start:.0f} s for {len(args.methods)} methods × {len(args.seeds)} seeds")


if __name__ == "__main__":
    main()
