"""Peak memory of one epoch over a task sequence: a task folder (read lazily) vs the same data in one .npz.

    python benchmarks/bench_lazy_data.py                    # 1 k vs 20 k images of 64×64×3
    python benchmarks/bench_lazy_data.py --sizes 1000 50000 --side 64

For each size it writes the images (block by block, never all in memory) as a task folder and, unless
--no_npz, as an .npz, then runs one epoch of batches (`TaskDataset.batch`, batch 64, resolution 32) in a fresh
process and prints that process's peak RSS (VmHWM) and the time. The folder's peak stays flat as the number of
images grows; the .npz's grows with the data (loaded whole, then resized once).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from continual_diffusers.data.lazy import write_task_folder  # noqa: E402
from continual_diffusers.data.tasks import FORMAT, load_tasks, save_tasks  # noqa: E402

EPOCH = textwrap.dedent(
    """
    import sys, time, torch
    from continual_diffusers.data import ImageTransform, TaskDataset, load_tasks
    start = time.perf_counter()
    for task in load_tasks(sys.argv[1]):
        ds = TaskDataset(task, ImageTransform(32))
        for first in range(0, len(ds), 64):
            ds.batch(torch.arange(first, min(first + 64, len(ds))))
    status = open("/proc/self/status").read().split("VmHWM:")[1].split()
    print(int(status[0]) / 1024, time.perf_counter() - start)
    """
)


class RandomImages:
    """uint8 (N, side, side, 3) made block by block from a seeded generator (what write_task_folder reads)."""

    def __init__(self, num: int, side: int):
        self.shape, self.dtype = (num, side, side, 3), np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop, _ = key.indices(len(self))
        return np.random.default_rng(start).integers(0, 256, (stop - start, *self.shape[1:]), dtype=np.uint8)


def epoch(path: Path) -> tuple[float, float]:
    env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", EPOCH, str(path)], capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode:
        raise SystemExit(out.stderr)
    peak, seconds = out.stdout.split()[-2:]
    return float(peak), float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1000, 20000], help="numbers of images (default: %(default)s)"
    )
    parser.add_argument("--side", type=int, default=64, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--no_npz", action="store_true", help="skip the in-memory .npz comparison (default: off)")
    args = parser.parse_args()
    print("| images | MB on disk | folder peak RSS (MB) | folder epoch (s) | npz peak RSS (MB) | npz epoch (s) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for num in args.sizes:
            folder = Path(tmp) / f"t{num}"
            images = RandomImages(num, args.side)
            labels = np.zeros(num, np.int64)
            write_task_folder(folder, {"format": np.array(FORMAT), "task_1/images": images, "task_1/labels": labels})
            folder_peak, folder_time = epoch(folder)
            megabytes = num * int(np.prod(images.shape[1:])) / 2**20
            row = [str(num), f"{megabytes:.0f}", f"{folder_peak:.0f}", f"{folder_time:.1f}"]
            if not args.no_npz:
                save_tasks(Path(tmp) / f"t{num}.npz", load_tasks(folder))  # loads the folder's images to write them
                npz_peak, npz_time = epoch(Path(tmp) / f"t{num}.npz")
                row += [f"{npz_peak:.0f}", f"{npz_time:.1f}"]
            else:
                row += ["-", "-"]
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
