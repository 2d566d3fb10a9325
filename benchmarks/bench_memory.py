"""Peak memory per task: does a continual run's resident memory stay flat as tasks accumulate?

Trains the bundled split digits (5 tasks) with EMA, a fixed-size replay buffer, EWC and periodic checkpoints, in
this process, and after every task prints the peak RSS reached during that task (Linux VmHWM, reset at each task
start through /proc/self/clear_refs) and the RSS at its end. A leak (optimizers, accelerate references, EWC terms
on the wrong device, growing caches) shows as a peak that climbs task after task; legitimate growth is the EWC
state (one Fisher + anchor per past task in `separate` mode: 2 × 4.4 MB for the 1.1 M-parameter UNet).

    PYTHONPATH=. python benchmarks/bench_memory.py                        # 5 tasks × 50 steps, demo UNet
    PYTHONPATH=. python benchmarks/bench_memory.py --ewc_mode online      # constant EWC state: flat peak
    PYTHONPATH=. python benchmarks/bench_memory.py --steps 20 --max_growth_mb 60   # exit 1 if it grows more

"Growth" is the largest per-task peak of tasks 3–5 minus task 2's (task 1 has no replay or EWC yet, so it is
lower by construction).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps per task")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--buffer_size", type=int, default=200)
    parser.add_argument("--ewc_mode", choices=["separate", "online"], default="separate",
                        help="online keeps one Fisher + anchor whatever the number of tasks")  # fmt: skip
    parser.add_argument("--max_growth_mb", type=float, default=None, help="exit 1 if the growth exceeds this")
    parser.add_argument("--output_dir", default=None, help="default: a temporary folder, removed afterwards")
    args = parser.parse_args(argv)

    import main_ddpm
    from continual_diffusers.training.trainer import ContinualTrainer

    rows: list[tuple[int, float, float, float]] = []
    train_task = ContinualTrainer._train_task
    can_reset = _reset_peak()

    def measured(self, task):
        _reset_peak()
        start = time.perf_counter()
        train_task(self, task)
        rows.append((task.task_id, _status_mb("VmHWM"), _status_mb("VmRSS"), time.perf_counter() - start))

    ContinualTrainer._train_task = measured
    with tempfile.TemporaryDirectory() as tmp:
        out = args.output_dir or os.path.join(tmp, "run")
        flags = ["--output_dir", out, "--max_train_steps", args.steps, "--train_batch_size", args.batch_size,
                 "--use_ema", "--buffer_type", "reservoir", "--buffer_size", args.buffer_size, "--ewc_loss",
                 "--ewc_mode", args.ewc_mode, "--lambda_ewc", 100, "--num_samples_ewc", 64,
                 "--checkpointing_steps", max(1, args.steps // 2), "--checkpoints_total_limit", 2,
                 "--logger", "none", "--eval_batch_size", 2,
                 "--num_inference_steps", 5]  # fmt: skip
        code = main_ddpm.main([str(f) for f in flags])
    if code != 0:
        return code
    print(f"\npeak RSS per task ({'VmHWM reset per task' if can_reset else 'process peak: reset unavailable'}):")
    print("task  peak_MB  end_MB  seconds")
    for task_id, peak, end, seconds in rows:
        print(f"{task_id:>4}  {peak:7.1f}  {end:6.1f}  {seconds:7.1f}")
    growth = max(peak for _, peak, _, _ in rows[2:]) - rows[1][1]
    print(f"growth (max peak of tasks 3-5 minus task 2's): {growth:+.1f} MB")
    print(f"process max RSS (ru_maxrss): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB")
    if args.max_growth_mb is not None and growth > args.max_growth_mb:
        print(f"FAIL: growth {growth:.1f} MB > {args.max_growth_mb} MB")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
