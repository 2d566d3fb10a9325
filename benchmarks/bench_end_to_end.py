"""End to end: whole training processes of main_ddpm.py against a bare diffusers loop doing the same work.

Each run is a fresh process, timed from launch to exit; the columns alternate (A B A B ..., so a shared machine's
load falls on both) and the report gives medians over the pairs and the median of the per-pair ratios.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_end_to_end.py                      # score + energy, 3 pairs
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_end_to_end.py --objectives energy --pairs 2
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_end_to_end.py --tiny               # 8×8, seconds (tests)
    PYTHONPATH=. python benchmarks/bench_end_to_end.py --device cuda --variant bf16 --variant channels_last

The job: the bundled split digits (5 tasks, 2 classes each, ~288 training images per task) upscaled to 32×32×3
(bilinear, the gray channel repeated), the 1.12 M-parameter class-conditional UNet (widths 32 64 64, one layer per
block, attention at the lowest level), batch 32, classifier-free guidance (10 % label dropout), a label-balanced
buffer of 200 replayed images, 1 epoch per task, score (ε) or energy (dae, ε̂ = ∇ₓE) models. At each task end both
columns export the task's pipeline (save_pretrained) and one PNG grid of samples (one per seen class, CFG, 10 DDPM
steps). Ours also writes what the bare loop does not: a resumable checkpoint per task, model cards, config.json and
TensorBoard logs; its breakdown lists each of them.

Columns:
- ours: `main_ddpm.py` with the flags of `ours_flags`: by default replay appends ≈ 32·M/N buffer rows to each batch
  of 32 task images (run in passes of at most 32 rows); `--replay_rows within added` makes ours batches of 32 rows
  with the buffer's share M/(N+M) inside them (the earlier implementation's batches) and adds the default as a
  column `ours_added`.
- bare: `e2e_bare_loop.py`: UNet2DModel + DDPMScheduler + AdamW + clipping in a plain loop, each task's images and
  the buffer's shuffled together in batches of 32 (the same images per task as ours), the energy as ½‖x − f(x)‖².

Measured per process: wall (launch → exit), CPU (user + system, `os.wait4`), peak RSS (`ru_maxrss` of `os.wait4`,
the process's VmHWM). A tracer wraps each process (`--trace`): global optimizer-step hooks and the construction of
each task's LR schedule (the task-start marker every column shares) give
- start-up: launch → the first task's start (imports, data, model, accelerator, trackers);
- train: each task's start → its last optimizer step; images/s = rows trained / train seconds;
- task ends: a task's last step → the next task's start (or the script's end): after_task, exports, samples, cards,
  checkpoint; ours logs each part ("task k end: export_model 0.12 s, ...", `training/callbacks.py`), listed under it;
- exit: the script's end → the process's end (atexit handlers, interpreter teardown);
and which heavy packages (peft, transformers, bitsandbytes, matplotlib, sklearn) were imported before the first step.
The report's "wall at X's work" line takes out of ours' wall what ours does beyond column X: the rows it trains
beyond X's (every batch of ours is full; a task's last batch of the others is not), at ours' own seconds per row,
and the task-end work only ours does (a resumable checkpoint and model cards per task). `--save_json runs.json`
keeps every run's measurements; `--report_json runs.json` prints the tables again from them.

The earlier public implementation (github.com/Bharat-Runwal/Continual-Diffusers, its main.py) as a third column,
without vendoring it: clone it, write the same tasks in its format (`np.savez(path, data_structure=pickle.dumps(
{task_id: {"images": uint8 (N, 32, 32, 3), "labels": int64 (N,)}}))`, e.g. from the `digits32.npz` this script
writes with `--keep_data DIR`), write its UNet config (`{"_class_name": "CFGUNet2DModel"}` or
`"Energy_CFGUNet2DModel"` with `"energy_score_type": "dae"`, and the sizes above, `"num_class_embeds": 10`), then

    --extra 'earlier=python /path/Continual-Diffusers/main.py --data_path legacy.npz --dataset_name digits
      --resolution 32 --train_batch_size 32 --num_epochs 1 --classifier_free_guidance --num_class_labels 10
      --buffer_type reservoir --buffer_size 200 --model_config_name_or_path earlier_{objective}.json
      --checkpointing_steps 100000 --lr_warmup_steps 0 --eval_batch_size 6 --ddpm_num_inference_steps 10
      --output_dir {output_dir} {energy_flags}'

(--eval_batch_size 6: 30 sampled images over the 5 task ends, as many as ours draws, one per seen class.)
`{output_dir}` is a fresh folder per run, `{objective}` score or energy, `{energy_flags}` the flags ours gets for
energy models (the earlier names: --energy_based_training --energy_score_type dae). The tracer is put before the
first `*.py` of the command. Its main.py imports torchvision and datasets at the top: both must import (torchvision
builds that fail at import must be replaced first); its rows per task are read from its "Dataset size" log lines.

GPU: `--device cuda` runs both columns on the GPU; each `--variant` (bf16 autocast, channels_last, fused AdamW,
torch.compile) is measured as a separate set of pairs: the bare loop takes all four, ours takes bf16
(--mixed_precision bf16) and runs its default for the others (reported as such).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))  # e2e_report, also when this file is loaded by path
from e2e_report import report, same_work_line, same_work_wall  # noqa: E402, F401 (the tests use the last two)

BARE = os.path.join(os.path.dirname(HERE), "e2e_bare_loop.py")
HEAVY = ("peft", "transformers", "bitsandbytes", "matplotlib", "sklearn", "scipy", "tensorboard")
VARIANTS = ("bf16", "channels_last", "fused_adamw", "compile")  # e2e_bare_loop.py takes them all


# ----------------------------------------------------------------------------------------------------- tracer
def trace_main(out_path: str, argv: list[str], stop_at_start: bool = False) -> None:
    """Run the script argv[0] with args argv[1:] as __main__, recording task starts (each LR schedule built),
    optimizer steps, the modules and RSS at the first step; written as JSON to `out_path` at exit.
    `stop_at_start`: end the process at the first task start (the modules and RSS are then taken there)."""
    import runpy

    from torch.optim.lr_scheduler import LRScheduler
    from torch.optim.optimizer import register_optimizer_step_post_hook

    record = {"task_starts": [], "steps": [], "first_step_modules": None, "first_step_rss_mb": None,
              "peak_rss_at_task_starts": []}  # fmt: skip

    def post_step(optimizer, args, kwargs) -> None:
        record["steps"].append((time.time(), time.process_time()))
        if record["first_step_modules"] is None:
            record["first_step_modules"] = sorted(sys.modules)
            record["first_step_rss_mb"] = _status_mb("VmRSS")

    schedule_init = LRScheduler.__init__

    def marked_init(self, *args, **kwargs) -> None:
        record["task_starts"].append((time.time(), time.process_time()))
        record["peak_rss_at_task_starts"].append(_status_mb("VmHWM"))
        if stop_at_start:
            record["first_step_modules"], record["first_step_rss_mb"] = sorted(sys.modules), _status_mb("VmRSS")
            record["exit"] = record["task_starts"][0]
            with open(out_path, "w") as fh:
                json.dump(record, fh)
            os._exit(0)
        schedule_init(self, *args, **kwargs)

    LRScheduler.__init__ = marked_init
    handle = register_optimizer_step_post_hook(post_step)
    saved_argv, saved_path, sys.argv = sys.argv, list(sys.path), list(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))  # as `python script.py` would
    try:
        runpy.run_path(argv[0], run_name="__main__")
    finally:  # the script's end (also through sys.exit); atexit handlers and teardown follow
        record["exit"] = (time.time(), time.process_time())
        record["peak_rss_at_exit"] = _status_mb("VmHWM")
        LRScheduler.__init__, sys.argv, sys.path[:] = schedule_init, saved_argv, saved_path
        handle.remove()
        with open(out_path, "w") as fh:
            json.dump(record, fh)


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# -------------------------------------------------------------------------------------------------- the job
def write_digits(folder: str, resolution: int, channels: int, num_tasks: int, per_task: int | None) -> str:
    """The bundled split digits upscaled to resolution² × channels (bilinear; gray repeated), as a task file."""
    import numpy as np
    from PIL import Image

    from continual_diffusers.data import Task, TaskSequence, load_split_digits, save_tasks

    train, _ = load_split_digits(num_tasks=num_tasks)

    def resize(images):
        out = [Image.fromarray(im[..., 0]).resize((resolution, resolution), Image.BILINEAR) for im in images]
        return np.repeat(np.stack([np.asarray(im) for im in out])[..., None], channels, axis=-1)

    tasks = [Task(t.task_id, resize(t.images[:per_task]), t.labels[:per_task]) for t in train]
    path = os.path.join(folder, f"digits{resolution}.npz")
    save_tasks(path, TaskSequence(tuple(tasks), train.class_order, train.class_names))
    return path


def job_sizes(args) -> dict:
    return dict(
        widths=args.widths, layers_per_block=args.layers_per_block, batch_size=args.batch_size, epochs=args.epochs,
        buffer_size=args.buffer_size, uncond_p=0.1, guidance_scale=2.0, inference_steps=args.inference_steps,
        samples_per_class=1, seed=args.seed,
    )  # fmt: skip


def ours_flags(job: dict, data: str, out: str, objective: str, variant: str | None, replay_rows: str = "added"):
    flags = [
        "--data_path", data, "--output_dir", out, "--block_out_channels", *map(str, job["widths"]),
        "--layers_per_block", job["layers_per_block"], "--classifier_free_guidance", "--uncond_p", job["uncond_p"],
        "--guidance_scale", job["guidance_scale"], "--train_batch_size", job["batch_size"],
        "--num_epochs", job["epochs"], "--buffer_type", "reservoir", "--buffer_size", job["buffer_size"],
        "--retain_label_uniform_sampling", "--prediction_type", "epsilon", "--lr_warmup_steps", 0,
        "--eval_batch_size", job["samples_per_class"], "--num_inference_steps", job["inference_steps"],
        "--checkpointing_steps", 0, "--seed", job["seed"], "--replay_rows", replay_rows,
    ]  # fmt: skip
    if objective == "energy":
        flags += ENERGY_FLAGS
    if variant == "bf16":
        flags += ["--mixed_precision", "bf16"]
    return [str(f) for f in flags]


ENERGY_FLAGS = ["--energy_based_training", "--energy_score_type", "dae"]


def bare_flags(job: dict, data: str, out: str, objective: str, variant: str | None, device: str) -> list[str]:
    flags = ["--data", data, "--output_dir", out, "--objective", objective, "--device", device,
             "--job", json.dumps(job)]  # fmt: skip
    return flags + (["--variant", variant] if variant else [])


# ------------------------------------------------------------------------------------------------ one run
def run_traced(name: str, command: list[str], log_dir: str, startup_only: bool = False, env=None) -> dict:
    """Run `command` (a python script and its args, optionally after a launcher such as `env`) under the tracer
    (to its first task start only: `startup_only`); returns the measurements (`breakdown`) or raises RuntimeError
    with the log's tail on failure."""
    script = next(i for i, token in enumerate(command) if token.endswith(".py"))
    trace = os.path.join(log_dir, f"{name}.trace.json")
    full = [*command[:script], HERE, "--trace-start" if startup_only else "--trace", trace, *command[script:]]
    log_path = os.path.join(log_dir, f"{name}.log")
    with open(log_path, "w") as log:
        launched = time.time()
        proc = subprocess.Popen(full, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        ended = time.time()
    proc.returncode = os.waitstatus_to_exitcode(status)
    with open(log_path, errors="replace") as fh:
        text = fh.read()
    if proc.returncode != 0 or not os.path.exists(trace):
        raise RuntimeError(f"{name} failed (exit {proc.returncode}):\n{text[-3000:]}")
    with open(trace) as fh:
        record = json.load(fh)
    cpu = usage.ru_utime + usage.ru_stime
    cost = {"wall": ended - launched, "cpu": cpu, "peak_rss_mb": usage.ru_maxrss / 1024}
    return {**cost, **breakdown(record, launched, ended, text), "exit_cpu": cpu - record["exit"][1]}


def breakdown(record: dict, launched: float, ended: float, log: str) -> dict:
    """Start-up, train and task-end seconds (wall, and the process's CPU time) from the tracer's marks; rows from
    the logs; ours' per-part costs."""
    starts, steps = record["task_starts"], record["steps"]
    if starts and record["exit"] == starts[0]:  # stopped at the first task start
        modules = record["first_step_modules"]
        return {"startup": starts[0][0] - launched, "startup_cpu": starts[0][1], "exit": ended - starts[0][0],
                "first_step_rss_mb": record["first_step_rss_mb"], "heavy_imports": [m for m in HEAVY if m in modules],
                "end_parts": {}}  # fmt: skip
    if not starts or not steps:
        raise RuntimeError("the run made no optimizer step")
    finished = record["exit"]  # the script's end; after it: atexit handlers, interpreter teardown
    wall, cpu = {"train": 0.0, "task_ends": 0.0}, {"train": 0.0, "task_ends": 0.0}
    for start, stop in zip(starts, [*starts[1:], finished], strict=True):
        last = max((s for s in steps if start[0] <= s[0] < stop[0]), default=start)
        for clock, totals in ((0, wall), (1, cpu)):
            totals["train"] += last[clock] - start[clock]
            totals["task_ends"] += stop[clock] - last[clock]
    rows = [int(r) for r in re.findall(r"task \d+ trained: \d+ optimizer steps, (\d+) rows", log)]
    if not rows:  # the earlier implementation: one pass over its dataset (task + buffer) per epoch
        rows = [int(r) for r in re.findall(r"Task: \d+ - Dataset size: (\d+)", log)]
    parts: dict[str, float] = {}
    for line in re.findall(r"task \d+ end: (.*)", log):
        for name, seconds in re.findall(r"(\w+) ([0-9.]+) s", line):
            parts[name] = parts.get(name, 0.0) + float(seconds)
    modules = record["first_step_modules"] or []
    return {
        "startup": starts[0][0] - launched, "startup_cpu": starts[0][1], **wall,
        **{f"{k}_cpu": v for k, v in cpu.items()}, "exit": ended - finished[0], "steps": len(steps),
        "rows": sum(rows) or None, "first_step_rss_mb": record["first_step_rss_mb"], "end_parts": parts,
        "peak_before_task_2": (record["peak_rss_at_task_starts"][1:] or [None])[0],
        "heavy_imports": [m for m in HEAVY if m in modules],
    }  # fmt: skip


# --------------------------------------------------------------------------------------------------- driver
def columns(args, data: str, objective: str, variant: str | None) -> dict:
    """name → function(output_dir) → command, for the columns of this comparison."""
    python, job = sys.executable, job_sizes(args)
    main_ddpm = os.path.join(ROOT, "main_ddpm.py")
    cols = {
        "ours" if i == 0 else f"ours_{mode}": lambda out, mode=mode: [
            python, main_ddpm, *ours_flags(job, data, out, objective, variant, mode)
        ]
        for i, mode in enumerate(args.replay_rows)
    }  # fmt: skip
    cols["bare"] = lambda out: [python, BARE, *bare_flags(job, data, out, objective, variant, args.device)]
    for spec in args.extra:
        name, _, template = spec.partition("=")
        energy = " ".join(ENERGY_FLAGS) if objective == "energy" else ""
        cols[name] = lambda out, t=template, e=energy: shlex.split(
            t.format(output_dir=out, objective=objective, energy_flags=e)
        )
    return cols


def compare(args, data: str, objective: str, variant: str | None) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {}
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": ""} if args.device == "cpu" else {})}  # ours picks a GPU itself
    for pair in range(args.pairs):
        for name, command in columns(args, data, objective, variant).items():
            with tempfile.TemporaryDirectory(prefix=f"e2e_{name}_") as tmp:
                result = run_traced(name, command(os.path.join(tmp, "out")), tmp, args.startup_only, env)
            results.setdefault(name, []).append(result)
            print(f"  pair {pair + 1} {name:8s} wall {result['wall']:7.1f} s  peak RSS {result['peak_rss_mb']:7.0f} "
                  f"MiB  start-up {result['startup']:5.1f} s", flush=True)  # fmt: skip
    return results


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objectives", nargs="+", choices=("score", "energy"), default=["score", "energy"])
    p.add_argument("--pairs", type=int, default=3, help="alternated runs of every column, per objective")
    p.add_argument("--tiny", action="store_true", help="8×8×1 digits, 2 tasks of 16 images, widths 8 16, batch 4")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--num_tasks", type=int, default=5)
    p.add_argument("--images_per_task", type=int, default=None, help="first N images of each task (default: all)")
    p.add_argument("--widths", type=int, nargs="+", default=[32, 64, 64])
    p.add_argument("--layers_per_block", type=int, default=1)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--buffer_size", type=int, default=200)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--inference_steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--variant", action="append", choices=VARIANTS, default=[],
                   help="also measure with this GPU option (repeatable); reported separately")  # fmt: skip
    p.add_argument("--extra", action="append", default=[], help="NAME=COMMAND: a third column (module docstring)")
    p.add_argument("--keep_data", default=None, help="write the task file here (and keep it)")
    p.add_argument("--startup_only", action="store_true", help="stop every run at its first task start")
    p.add_argument("--save_json", default=None, help="also write every run's measurements here (one JSON object)")
    p.add_argument("--report_json", default=None, help="print the tables of a --save_json file (runs nothing)")
    p.add_argument("--replay_rows", nargs="+", choices=("added", "within"), default=["added"],
                   help="ours' --replay_rows: the first is the column 'ours', others 'ours_<mode>'")  # fmt: skip
    args = p.parse_args(argv)
    if args.tiny:
        args.resolution, args.channels, args.num_tasks, args.images_per_task = 8, 1, 2, 16
        args.widths, args.batch_size, args.buffer_size, args.inference_steps = [8, 16], 4, 8, 2
    return args


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] in (["--trace"], ["--trace-start"]):
        trace_main(argv[1], argv[2:], stop_at_start=argv[0] == "--trace-start")
        return 0
    args = parse_args(argv)
    if args.report_json:
        with open(args.report_json) as fh:
            for title, results in json.load(fh).items():
                report(title, results)
        return 0
    import torch

    with tempfile.TemporaryDirectory(prefix="e2e_data_") as tmp:
        folder = args.keep_data or tmp
        os.makedirs(folder, exist_ok=True)
        data = write_digits(folder, args.resolution, args.channels, args.num_tasks, args.images_per_task)
        threads = os.environ.get("OMP_NUM_THREADS", "unset")
        saved = {}
        for objective in args.objectives:
            for variant in [None, *args.variant]:
                title = (f"{objective}{' + ' + variant if variant else ''}: {args.pairs} alternated pairs, "
                         f"device {args.device}, OMP_NUM_THREADS={threads}, torch {torch.__version__}")  # fmt: skip
                print(f"\n{title}", flush=True)
                saved[title] = compare(args, data, objective, variant)
                report(title, saved[title])
                if args.save_json:
                    with open(args.save_json, "w") as fh:
                        json.dump(saved, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
