"""Continual strategies side by side: a class-conditional score DDPM with CFG, the same optimizer-step budget for
every method, several seeds. Prints a markdown table, every cell the mean ± 95 % confidence half-width over the
seeds (Student t), of the final average oracle accuracy, forgetting, oracle-feature FID (with its N), the
memorisation columns and, for runs that keep a replay buffer, buffer attraction (with the buffer's share of the
training set and joint training's samples against the same buffer as references); then which methods the
accuracy CIs separate.

    python benchmarks/compare_strategies.py                           # split digits, 5 tasks × 2 classes
    python benchmarks/compare_strategies.py --setting digits10        # 10 one-class tasks (class-incremental)
    python benchmarks/compare_strategies.py --data_path train.npz --test_data_path test.npz   # your task files
    python benchmarks/compare_strategies.py --seeds 0 --methods naive joint --steps_per_task 50
    python benchmarks/compare_strategies.py --merge outputs/cmp_a/results.json outputs/cmp_b   # files or dirs

Every run is a plain `main_ddpm.py` call (its flags are printed), so any row can be reproduced or inspected: its
output dir holds the per-task models, sample grids, checkpoints and report/. A finished run is reused on a rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from typing import NoReturn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))  # strategy_table, also when this file is loaded by path
from strategy_table import NotComparable, check_comparable, separated, table  # noqa: E402

GENERATIVE = ["--strategy", "generative_replay", "--gr_pool_size", "1000", "--gr_num_inference_steps", "10"]


def fail(message: str) -> NoReturn:
    """Refuse bad input: one `error: ...` line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def comparable(results: dict[str, list[dict]]) -> None:
    """Refuse (`fail`) rows measured at different sample sizes or with different samplers."""
    try:
        check_comparable(results)
    except NotComparable as err:
        fail(str(err))


def print_table(results: dict[str, list[dict]]) -> None:
    """The two markdown tables (`strategy_table.table`), then the methods the accuracy CIs separate."""
    comparable(results)
    print(table(results) + f"\n\naccuracy CIs pairwise disjoint: {', '.join(separated(results))}")


def methods(num_train: int) -> dict[str, list[str]]:
    """main_ddpm flags per method; buffers are 1 % and 10 % of the `num_train` training images (label-uniform)."""
    replay_1 = ["--buffer_type", "reservoir", "--buffer_size", str(max(1, num_train // 100))]
    replay_10 = ["--buffer_type", "reservoir", "--buffer_size", str(max(1, num_train // 10))]
    balanced = ["--retain_label_uniform_sampling"]
    return {
        "naive": [],
        "joint": ["--buffer_type", "all_data"],
        "replay_10pct": [*replay_10, *balanced],
        "replay_1pct": [*replay_1, *balanced],  # replays in proportion to the buffer (~5 % of a batch on digits)
        "replay_1pct_ratio20": [*replay_1, *balanced, "--replay_ratio", "0.2"],  # a fifth of every batch
        "replay_1pct_ratio50": [*replay_1, *balanced, "--replay_ratio", "0.5"],  # half of every batch
        # λ sweep: with the per-sample Fisher, Σ F·Δθ² over a task switch is ~1e-4 on this model, so λ ~ 1e4–1e6
        # is where the penalty matches the denoising loss.
        **{f"ewc_{lam}": ["--ewc_loss", "--lambda_ewc", lam] for lam in ("1e3", "1e4", "1e5", "1e6")},
        # Online EWC (Schwarz et al. 2018): one running Fisher, γ = 1 (every task kept equally).
        **{f"ewc_online_{lam}": ["--ewc_loss", "--lambda_ewc", lam, "--ewc_mode", "online"] for lam in ("1e4", "1e5")},
        "ewc_online_1e5_replay_1pct": ["--ewc_loss", "--lambda_ewc", "1e5", "--ewc_mode", "online", *replay_1],
        **{f"si_{lam}": ["--strategy", "si", "--si_lambda", lam] for lam in ("10", "1e2", "1e3", "1e4")},
        "generative_replay": GENERATIVE,
        "generative_distillation": [*GENERATIVE, "--distillation_weight", "3.0"],
        "distillation_noise": [
            *["--strategy", "generative_replay", "--distillation_inputs", "noise", "--distillation_weight", "3.0"]
        ],
    }


COMMON = [
    *["--classifier_free_guidance", "--uncond_p", "0.1", "--guidance_scale", "2", "--use_ema"],
    *["--learning_rate", "1e-3", "--lr_warmup_steps", "20", "--eval_every_task", "--checkpointing_steps", "0"],
    *["--logger", "none", "--num_samples", "4"],
]
SETTINGS = {"digits": "the bundled split digits, 5 tasks × 2 classes", "digits10": "split digits, 10 one-class tasks"}


def data_flags(args) -> list[str]:
    """--data_path / --test_data_path of the runs ([] for the bundled 5-task digits); digits10's task files are
    written to <output_dir>/data once."""
    if args.data_path:
        return ["--data_path", args.data_path, "--test_data_path", args.test_data_path]
    if args.setting == "digits10":
        from continual_diffusers.data import write_split_digits

        folder = os.path.join(args.output_dir, "data")
        paths = [os.path.join(folder, f"digits_tasks_{s}.npz") for s in ("train", "test")]
        if not all(os.path.isfile(p) for p in paths):
            write_split_digits(folder, num_tasks=10)
        return ["--data_path", paths[0], "--test_data_path", paths[1]]
    return []


def training_tasks(flags: list[str]):
    from continual_diffusers.data import load_split_digits, load_tasks

    return load_tasks(flags[1]) if flags else load_split_digits()[0]


def checked_training_tasks(args):
    """The training tasks, refused (one error line, exit 2) if a task file is unreadable or its labels are not
    classes (the oracle's accuracy needs them)."""
    from continual_diffusers.data import load_tasks
    from continual_diffusers.utils.errors import UserInputError

    try:
        train = training_tasks(args.data)
        if args.data:
            load_tasks(args.data[3])
    except UserInputError as exc:
        fail(str(exc))
    if train.label_kind != "class":
        fail(f"the table needs class labels (oracle accuracy); the task file has {train.label_kind}")
    return train


def run_one(method: str, seed: int, args, flags: list[str]) -> dict:
    out = os.path.join(args.output_dir, f"{method}_seed{seed}")
    cmd = [
        *[sys.executable, os.path.join(ROOT, "main_ddpm.py"), "--output_dir", out, "--seed", str(seed)],
        *["--max_train_steps", str(args.steps_per_task), "--train_batch_size", str(args.batch_size)],
        *["--eval_num_samples", str(args.eval_num_samples), "--oracle_path", args.oracle_path],
        *args.data,
        *COMMON,
        *flags,
        *shlex.split(args.run_flags),
    ]
    return run_cached(cmd, out, summarize_run, f"{method} seed {seed}")


def run_cached(cmd: list[str], out: str, summarize, what: str) -> dict:
    """Run `cmd` (a main_ddpm.py call writing to `out`) and return `summarize(out, seconds)`; a finished run's row
    is kept in out/finished.json, so rerunning a study reuses it instead of training again."""
    print("$", " ".join(cmd[1:]), flush=True)
    done = os.path.join(out, "finished.json")
    if os.path.isfile(done):
        with open(done) as fh:
            return json.load(fh)
    start = time.time()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    if result.returncode != 0:
        raise SystemExit(f"{what} failed:\n{result.stderr[-3000:]}")
    row = summarize(out, time.time() - start)
    with open(done, "w") as fh:
        json.dump(row, fh)
    return row


def ensure_oracle(path: str, data_flags: list[str] | tuple[str, ...] = ()) -> None:
    """Train the oracle into `path` unless it is there (`data_flags`: train-oracle's --data_path/--test_data_path;
    default: the bundled digits)."""
    if not os.path.isfile(os.path.join(path, "config.json")):
        cmd = [sys.executable, "-m", "continual_diffusers.evaluation", "train-oracle", "--output_dir", path]
        subprocess.run([*cmd, *data_flags], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": ROOT})


FINAL_AVERAGES = ("frechet", "kid", "copy_fraction", "train_distance_ratio", "precision", "recall")


def summarize_run(out: str, seconds: float) -> dict:
    """The table's numbers of one finished run, from its report/metrics.json (and last checkpoint)."""
    with open(os.path.join(out, "report", "metrics.json")) as fh:
        data = json.load(fh)
    summary, matrices, curves = data["summary"], data["matrices"], data["curves"]
    row = {name: summary[name]["average_final"] for name in FINAL_AVERAGES if name in summary}
    row |= {
        "run_dir": out,
        "accuracy": summary["accuracy"]["average_final"],
        "forgetting": summary["accuracy"]["forgetting"],
        "abs_log_distance_ratio": summary.get("abs_log_train_distance_ratio", {}).get("average_final"),
        "num_generated": sorted({int(v) for v in matrices["num_generated"][-1]}),
        "num_real": sorted({int(v) for v in matrices["num_real"][-1]}),
        "sampler": data.get("sampler", ""),
        "seconds": seconds,
        "teacher_seconds_per_task": teacher_seconds_per_task(out),
    }
    for name in ("buffer_attraction", "buffer_share"):
        if name in curves:
            row[name] = curves[name][-1]
    return row


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


def joint_reference(joint_dir: str, buffer_dir: str, args) -> float | None:
    """Buffer attraction of the final joint model's evaluation samples against the buffer `buffer_dir`'s final
    model trained with: what a model that never saw that buffer as special scores (samples cached in
    joint_dir/final_samples.npz)."""
    import numpy as np
    import torch

    from continual_diffusers.evaluation import ContinualEvaluator, load_oracle
    from continual_diffusers.evaluation.__main__ import replayed_buffer, task_dirs
    from continual_diffusers.evaluation.oracle import load_test_tasks
    from continual_diffusers.pipelines.loading import load_task_model
    from continual_diffusers.sampling.generate import SamplerOptions

    last_task, last_dir = task_dirs(joint_dir)[-1]
    model, conditioning, scheduler, spec = load_task_model(last_dir)
    seen = list(spec.seen_tasks)
    buffered = replayed_buffer(buffer_dir, seen[:-1])
    if not buffered:
        return None
    train = training_tasks(args.data)
    oracle, oracle_config = load_oracle(args.oracle_path)
    with open(os.path.join(joint_dir, "config.json")) as fh:
        run = json.load(fh)["args"]  # the run's own evaluation sampler (`training.validation.validation_options`)
    guidance = run["guidance_scale"] if run["classifier_free_guidance"] and run["uncond_p"] > 0 else 1.0
    options = SamplerOptions(
        run["scheduler"], run["num_inference_steps"], guidance, seed=run["seed"], eta=run["ddim_eta"]
    )
    test = load_test_tasks(args.data[3] if args.data else None, args.data[1] if args.data else None)
    evaluator = ContinualEvaluator(oracle, oracle_config["resolution"], test, args.eval_num_samples, options, train)
    cache = os.path.join(joint_dir, f"final_samples_n{args.eval_num_samples}.npz")
    if os.path.isfile(cache):
        with np.load(cache, allow_pickle=False) as saved:
            samples = {t: torch.from_numpy(saved[f"task_{t}"]) for t in seen}
    else:
        classes = spec.classes_per_task
        samples = {t: evaluator.task_samples(model, conditioning, scheduler, t, classes, "cpu")[1] for t in seen}
        np.savez(cache, **{f"task_{t}": v.numpy() for t, v in samples.items()})
    result = evaluator.buffer_attraction([(samples[t], [t]) for t in seen], buffered)
    return result["buffer_attraction"][0] if result else None


def add_joint_references(results: dict[str, list[dict]], args) -> None:
    """Fill "joint_attraction" of every buffer row whose seed has a joint run."""
    joint = {int(re.search(r"_seed(\d+)$", r["run_dir"]).group(1)): r["run_dir"] for r in results.get("joint", [])}
    for rows in results.values():
        for row in rows:
            seed = int(re.search(r"_seed(\d+)$", row["run_dir"]).group(1))
            if "buffer_attraction" in row and "joint_attraction" not in row and seed in joint:
                row["joint_attraction"] = joint_reference(joint[seed], row["run_dir"], args)
                with open(os.path.join(row["run_dir"], "finished.json"), "w") as fh:
                    json.dump(row, fh)


RUN_DIR = re.compile(r"(?P<method>.+)_seed(?P<seed>\d+)$")


def merge(paths: list[str]) -> dict[str, list[dict]]:
    """The rows of several results.json files and output dirs (each finished `<method>_seed<n>/finished.json` in
    them: a run whose invocation is still going, or whose results.json a later invocation rewrote, is read from
    its own file), by method in the catalogue's order, each run once, rows sorted by seed."""
    merged: dict[str, dict[str, dict]] = {}
    for path in paths:
        if os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                match, done = RUN_DIR.fullmatch(name), os.path.join(path, name, "finished.json")
                if match and os.path.isfile(done):
                    with open(done) as fh:
                        row = json.load(fh)
                    merged.setdefault(match["method"], {})[os.path.realpath(row["run_dir"])] = row
        elif os.path.isfile(path):
            try:
                with open(path) as fh:
                    for method, rows in json.load(fh)["results"].items():
                        for row in rows:
                            merged.setdefault(method, {})[os.path.realpath(row["run_dir"])] = row
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                fail(f"--merge {path}: not a compare_strategies results.json ({type(exc).__name__}: {exc})")
        else:
            fail(f"--merge {path}: no such results file or output dir")
    if not merged:
        fail(f"--merge {' '.join(paths)}: no finished runs")
    seed = lambda row: int(RUN_DIR.search(os.path.basename(row["run_dir"].rstrip("/")))["seed"])  # noqa: E731
    order = list(methods(100))  # the catalogue's order (naive, joint, replay, …), methods it lacks last
    rank = lambda method: order.index(method) if method in order else len(order)  # noqa: E731
    return {method: sorted(merged[method].values(), key=seed) for method in sorted(merged, key=rank)}


def reference_args(results: dict[str, list[dict]]) -> argparse.Namespace:
    """The data, oracle and N the merged runs were evaluated with (for the joint references), from a run's own
    config.json; check_comparable has made sure every row shares N."""
    row = next(iter(results.values()))[0]
    with open(os.path.join(row["run_dir"], "config.json")) as fh:
        run = json.load(fh)["args"]
    data = ["--data_path", run["data_path"], "--test_data_path", run["test_data_path"]] if run["data_path"] else []
    return argparse.Namespace(data=data, oracle_path=run["oracle_path"], eval_num_samples=run["eval_num_samples"])


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", choices=list(SETTINGS), default="digits", help="; ".join(SETTINGS.values()))
    p.add_argument("--data_path", default=None, help="your training task file (class labels); with --test_data_path")
    p.add_argument("--test_data_path", default=None, help="your test task file (the oracle's and the metrics')")
    p.add_argument("--methods", nargs="+", default=None, help="default: every method (see --list_methods)")
    p.add_argument("--list_methods", action="store_true", help="print the methods' main_ddpm flags and exit")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps_per_task", type=int, default=300)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--eval_num_samples", type=int, default=100, help="generated images per task and evaluation")
    p.add_argument("--output_dir", default=os.path.join(ROOT, "outputs", "compare_strategies"))
    p.add_argument("--oracle_path", default=None, help="default: <output_dir>/oracle (trained if absent)")
    p.add_argument(
        "--run_flags", default="", help="more main_ddpm flags for every run, e.g. '--block_out_channels 8 16'"
    )
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="RESULTS_JSON_OR_OUTPUT_DIR",
        help="only print the table of these results files' and output dirs' finished runs",
    )
    args = p.parse_args()
    if bool(args.data_path) != bool(args.test_data_path):
        p.error("--data_path and --test_data_path go together")
    if args.data_path and args.setting != "digits":
        p.error("--setting is for the bundled data; leave it out with --data_path")
    return args


def main() -> None:
    args = parse_args()
    if args.merge:
        results = merge(args.merge)
        comparable(results)
        add_joint_references(results, reference_args(results))  # needs the runs' data, oracle and N
        print_table(results)
        return
    args.data = data_flags(args)
    train = checked_training_tasks(args)
    catalogue = methods(sum(len(task) for task in train))
    if args.list_methods:
        print("\n".join(f"{m}: {' '.join(flags)}" for m, flags in catalogue.items()))
        return
    unknown = sorted(set(args.methods or []) - set(catalogue))
    if unknown:
        fail(f"unknown methods {unknown}; --list_methods shows them")
    os.makedirs(args.output_dir, exist_ok=True)
    args.oracle_path = args.oracle_path or os.path.join(args.output_dir, "oracle")
    ensure_oracle(args.oracle_path, args.data)
    start, results = time.time(), {}
    for m in args.methods or list(catalogue):
        results[m] = [run_one(m, s, args, catalogue[m]) for s in args.seeds]
        with open(os.path.join(args.output_dir, "results.json"), "w") as fh:  # rewritten as rows finish
            json.dump({"args": vars(args), "results": results}, fh, indent=2)
    add_joint_references(results, args)
    with open(os.path.join(args.output_dir, "results.json"), "w") as fh:
        json.dump({"args": vars(args), "results": results}, fh, indent=2)
    print_table(results)
    print(f"\nwall time {time.time() - start:.0f} s for {len(results)} methods × {len(args.seeds)} seeds")


if __name__ == "__main__":
    main()
