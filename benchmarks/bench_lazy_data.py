"""Peak memory of one epoch over a task sequence: a task folder (read lazily), the same data in one .npz, and in one
`.safetensors` file read through the `safetensors` library.

    python benchmarks/bench_lazy_data.py                    # 1 k and 20 k images of 64×64×3, one run of each
    python benchmarks/bench_lazy_data.py --sizes 1000 50000 --side 64 --repeats 3 --formats folder safetensors

For each size it writes the images (block by block for the folder; the .npz and the .safetensors file are written
from the loaded task), then runs one epoch of batches (`TaskDataset.batch`, batch 64, resolution 32) in a fresh
process and prints that process's peak RSS (VmHWM) and the epoch's time: the median over `--repeats` runs, the
formats run alternately (the order rotates each round, so a busy neighbour on a shared machine hits each alike).

- folder: `load_tasks(folder)`; images are `LazyImages`, read row block by row block with `os.pread`.
- npz: `load_tasks(file.npz)`; the images are loaded whole, then resized once.
- safetensors: `safetensors.safe_open(file, framework="np")`; the images are a `LazyImages` whose rows come from
  `get_slice` (the library maps the file into memory and copies the rows asked for), so the epoch runs the same
  `TaskDataset` code as the folder's: only the reader differs. Labels are read with `get_tensor`.

The folder's peak stays flat as the number of images grows; the .npz's grows with the data.
"""

from __future__ import annotations

import argparse
import statistics
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

FORMATS = ("folder", "npz", "safetensors")

EPOCH = textwrap.dedent(
    """
    import sys, time, numpy as np, torch
    from continual_diffusers.data import ImageTransform, LazyImages, Task, TaskDataset, TaskSequence, load_tasks

    class SafetensorsImages(LazyImages):
        # LazyImages' indexing, with rows read through safetensors' get_slice (a memory map) instead of os.pread
        def __init__(self, file, key):
            self.rows_of, self.dtype = file.get_slice(key), np.dtype(np.uint8)
            self.shape = tuple(self.rows_of.get_shape())
            self.row_bytes = int(np.prod(self.shape[1:]))

        def _block(self, start, stop):
            return np.ascontiguousarray(self.rows_of[start:stop])

        def _rows(self, index):
            unique, inverse = np.unique(index, return_inverse=True)
            breaks = np.flatnonzero(np.diff(unique) != 1) + 1
            runs = np.split(np.arange(len(unique)), breaks)
            blocks = [self._block(int(unique[r[0]]), int(unique[r[-1]]) + 1) for r in runs]
            return np.concatenate(blocks)[inverse.reshape(-1)]

    start = time.perf_counter()
    if sys.argv[1].endswith(".safetensors"):
        from safetensors import safe_open
        file = safe_open(sys.argv[1], framework="np")
        tasks = TaskSequence((Task(1, SafetensorsImages(file, "task_1/images"), file.get_tensor("task_1/labels")),))
    else:
        tasks = load_tasks(sys.argv[1])
    for task in tasks:
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


def write_formats(tmp: Path, num: int, side: int, formats: list[str]) -> dict[str, Path]:
    """One task of `num` random images with class labels, written in each of `formats`."""
    folder = tmp / f"t{num}"
    labels = np.zeros(num, np.int64)
    write_task_folder(folder, {"format": np.array(FORMAT), "task_1/images": RandomImages(num, side),
                               "task_1/labels": labels})  # fmt: skip
    paths = {"folder": folder}
    if "npz" in formats or "safetensors" in formats:
        tasks = load_tasks(folder)
    if "npz" in formats:
        paths["npz"] = tmp / f"t{num}.npz"
        save_tasks(paths["npz"], tasks)  # loads the folder's images to write them
    if "safetensors" in formats:
        from safetensors.numpy import save_file

        paths["safetensors"] = tmp / f"t{num}.safetensors"
        arrays = {"task_1/images": np.asarray(tasks[1].images), "task_1/labels": labels}
        save_file(arrays, paths["safetensors"], metadata={"format": FORMAT})
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1000, 20000], help="numbers of images (default: %(default)s)"
    )
    parser.add_argument("--side", type=int, default=64, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS),
                        help="formats to compare (default: all)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=1, help="runs of each format, alternated (default: 1)")
    args = parser.parse_args()
    print(f"median of {args.repeats} run(s) per cell: peak RSS (MB) / epoch (s)")
    print("| images | MB on disk | " + " | ".join(args.formats) + " |")
    print("|---|---|" + "---|" * len(args.formats))
    with tempfile.TemporaryDirectory() as tmp:
        for num in args.sizes:
            paths = write_formats(Path(tmp), num, args.side, args.formats)
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in args.formats}
            for round_ in range(args.repeats):
                shift = round_ % len(args.formats)
                for name in args.formats[shift:] + args.formats[:shift]:
                    runs[name].append(epoch(paths[name]))
            megabytes = num * args.side * args.side * 3 / 2**20
            cells = [
                f"{statistics.median(p for p, _ in runs[n]):.0f} / {statistics.median(s for _, s in runs[n]):.1f}"
                for n in args.formats
            ]
            print(f"| {num} | {megabytes:.0f} | " + " | ".join(cells) + " |", flush=True)
            for name in args.formats:
                print(f"  {name}: runs (MB, s) {[(round(p), round(s, 1)) for p, s in runs[name]]}", flush=True)


if __name__ == "__main__":
    main()
