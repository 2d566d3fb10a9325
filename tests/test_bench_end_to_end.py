"""benchmarks/bench_end_to_end.py stays runnable: its tracer and breakdown on the bare diffusers loop at tiny sizes
(in this process), the breakdown's arithmetic, and (slow) the whole tiny comparison as separate processes. And a
plain class-conditional run of main_ddpm imports nothing heavy of its own before its first optimizer step."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest
from conftest import TINY_FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench, bare_loop = _load("bench_end_to_end"), _load("e2e_bare_loop")


def test_breakdown_splits_the_process_at_the_task_starts():
    record = {
        "task_starts": [(10.0, 2.0), (20.0, 7.0)],  # (wall, process CPU) when each task's LR schedule was built
        "steps": [(12.0, 3.0), (15.0, 5.0), (22.0, 8.0), (24.0, 9.0)],
        "exit": (30.0, 11.0),
        "first_step_modules": ["torch", "peft", "peft.tuners"],
        "first_step_rss_mb": 100.0,
        "peak_rss_at_task_starts": [90.0, 150.0],
    }
    log = "task 1 trained: 2 optimizer steps, 64 rows\ntask 2 end: export_model 1.50 s, checkpoint 0.25 s\n"
    out = bench.breakdown(record, launched=4.0, ended=31.0, log=log)
    assert (out["startup"], out["startup_cpu"]) == (6.0, 2.0)
    assert (out["train"], out["train_cpu"]) == (5.0 + 4.0, 3.0 + 2.0)  # task start → its last step
    assert (out["task_ends"], out["task_ends_cpu"]) == (5.0 + 6.0, 2.0 + 2.0)  # last step → next start / the end
    assert out["exit"] == 1.0 and out["steps"] == 4 and out["rows"] == 64
    assert out["end_parts"] == {"export_model": 1.5, "checkpoint": 0.25}
    assert out["heavy_imports"] == ["peft"] and out["peak_before_task_2"] == 150.0
    earlier = bench.breakdown(record, 4.0, 31.0, "Task: 1 - Dataset size: 288\nTask: 2 - Dataset size: 488\n")
    assert earlier["rows"] == 776


def test_same_work_wall_takes_out_extra_rows_and_ours_only_task_end_work():
    ours = {"wall": 100.0, "train": 80.0, "rows": 2000, "end_parts": {"checkpoint": 1.5, "model_cards": 0.5,
                                                                        "export_model": 3.0}}  # fmt: skip
    other = {"wall": 90.0, "rows": 1900}
    # 100 extra rows at 80 s / 2000 rows = 4 s; checkpoint + cards 2 s; the export is work both do
    assert bench.same_work_wall(ours, other) == pytest.approx(100.0 - 4.0 - 2.0)
    assert bench.same_work_line([ours, ours], [other, {**other, "wall": 94.0}], "x").endswith(
        f"{(94 / 90 + 94 / 94) / 2:.3f} (pairs 1.000–1.044)"
    )
    assert bench.same_work_wall(ours, {"wall": 90.0, "rows": None}) is None


def test_traced_bare_loop(tmp_path, capsys):
    """The bare diffusers loop (energy, CFG, replay, exports) under the tracer, at 8×8 with 2 tasks of 16 images."""
    args = bench.parse_args(["--tiny"])
    data = bench.write_digits(str(tmp_path), args.resolution, args.channels, args.num_tasks, args.images_per_task)
    out, trace = tmp_path / "out", tmp_path / "trace.json"
    launched = time.time()
    flags = bench.bare_flags(bench.job_sizes(args), data, str(out), "energy", None, "cpu")
    bench.trace_main(str(trace), [bench.BARE, *flags])
    record = json.loads(trace.read_text())
    result = bench.breakdown(record, launched, time.time(), capsys.readouterr().out)
    assert len(record["task_starts"]) == 2
    assert result["steps"] == 4 + 6  # 16 images, then 16 + 8 buffered, in batches of 4
    assert result["rows"] == 16 + 24
    for task in ("task_1", "task_2"):
        assert (out / task / "samples.png").is_file() and (out / task / "model_index.json").is_file()


@pytest.mark.parametrize("variant", ["channels_last", "fused_adamw"])
def test_bare_loop_gpu_options_run_on_cpu(tmp_path, variant):
    """Two of the bare loop's GPU options also run on the CPU, so they cannot rot unnoticed (bf16 autocast is
    emulated on CPUs without bf16 units: minutes even at 8×8; torch.compile needs a compiler toolchain)."""
    args = bench.parse_args(["--tiny"])
    data = bench.write_digits(str(tmp_path), args.resolution, args.channels, 1, 8)
    bare_loop.main(bench.bare_flags(bench.job_sizes(args), data, str(tmp_path / "out"), "score", variant, "cpu"))
    assert (tmp_path / "out" / "task_1" / "unet" / "config.json").is_file()


@pytest.mark.slow
def test_tiny_comparison_runs_end_to_end(capsys):
    assert bench.main(["--tiny", "--pairs", "1", "--objectives", "score"]) == 0
    text = capsys.readouterr().out
    assert "ours/bare" in text and "images/CPU s (train)" in text and "ours: export_model" in text


AUDIT = """
import json, sys
from diffusers import DDPMScheduler, UNet2DModel  # what diffusers imports itself for the model and the schedule
from torch.optim.optimizer import register_optimizer_step_pre_hook

baseline = set(sys.modules)

def first_step(optimizer, args, kwargs):
    print(json.dumps({"baseline": sorted(baseline), "first_step": sorted(sys.modules)}))
    sys.stdout.flush()
    import os
    os._exit(0)

register_optimizer_step_pre_hook(first_step)
import main_ddpm
main_ddpm.main(sys.argv[1:])
"""


def test_a_plain_class_conditional_run_imports_nothing_heavy_of_its_own(tmp_path, task_file):
    """Before its first optimizer step, a class-conditional CFG run (task file, not the bundled digits) imports no
    matplotlib (reports), no scikit-learn (bundled digits, ARI), and no peft / transformers / bitsandbytes beyond
    what diffusers imports itself when they are installed (diffusers.hooks imports peft; diffusers.quantizers
    imports transformers and bitsandbytes)."""
    flags = ["--data_path", task_file(), "--output_dir", tmp_path / "run", "--classifier_free_guidance",
             "--max_train_steps", 1, *TINY_FLAGS]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", AUDIT, *map(str, flags)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    tops = {name.split(".")[0] for name in seen["first_step"]}
    ours = {name.split(".")[0] for name in set(seen["first_step"]) - set(seen["baseline"])}
    assert not tops & {"matplotlib", "sklearn"}
    assert not ours & {"peft", "transformers", "bitsandbytes", "matplotlib", "sklearn", "scipy"}
    assert "continual_diffusers" in ours  # the audit did run ours
