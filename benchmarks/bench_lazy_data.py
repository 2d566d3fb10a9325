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

`--probe_safetensors` instead runs `safe_open` on hostile files (each in a fresh process, 20 s timeout) and prints
what happened, next to what this project's readers do with the same file (docs/reliability-and-threat-model.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
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


# name → (child script reading {path}, what this project's reader does with such a file)
PROBES = {
    "a FIFO": ("safe_open({path!r}, framework='np')", "refused at once (opened O_NONBLOCK, then fstat)"),
    "header length 2**63": ("safe_open({path!r}, framework='np')", "refused (header at most 10,000 bytes)"),
    "data offsets past the end": ("safe_open({path!r}, framework='np')", "refused (sizes must match the file)"),
    "overlapping data offsets": ("safe_open({path!r}, framework='np')", "refused (sizes must match the file)"),
    "1,000,000 tensors (a 63 MiB header)": (
        "safe_open({path!r}, framework='np')",
        "refused (at most 20,000 arrays, a 4 MiB directory)",
    ),
    "truncated after opening": (
        "f = safe_open({path!r}, framework='np'); rows = f.get_slice('x'); rows[:2]\n"
        "os.truncate({path!r}, 1000); rows[4000:]",
        "one error line: 'changed on disk since it was checked'",
    ),
}


def write_probe(path: Path, name: str) -> None:
    """The hostile file of probe `name` (the others start from a valid 4096×4096 uint8 tensor "x")."""
    from safetensors.numpy import save_file

    if name == "a FIFO":
        os.mkfifo(path)
        return
    save_file({"x": np.ones((4096, 4096), np.uint8), "y": np.ones(4, np.int64)}, path)
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header, body = json.loads(data[8 : 8 + size]), data[8 + size :]
    if name == "header length 2**63":
        path.write_bytes(struct.pack("<Q", 2**63) + data[8:])
        return
    if name == "data offsets past the end":
        header["x"]["data_offsets"][1] = 10**12
    elif name == "overlapping data offsets":  # "x" starts inside "y" (the file is 16 bytes shorter to match)
        first = min(header, key=lambda key: header[key]["data_offsets"][0] if key != "__metadata__" else 2**63)
        second = "x" if first == "y" else "y"
        start, end = header[second]["data_offsets"]
        header[second]["data_offsets"] = [start - 16, end - 16]
        body = body[:-16]
    elif name.startswith("1,000,000 tensors"):
        header = {f"t{i}": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]} for i in range(10**6)}
        body = b""
    if name != "truncated after opening":
        raw = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)


def probe_safetensors(tmp: Path) -> None:
    import safetensors

    print(f"safetensors {safetensors.__version__}: safe_open on hostile files (fresh process each, 20 s timeout)")
    print("| file | exit | s | peak RSS (MB) | safetensors says | this project's reader |")
    print("|---|---|---|---|---|---|")
    for k, (name, (code, ours)) in enumerate(PROBES.items()):
        path = tmp / f"probe{k}.safetensors"
        write_probe(path, name)
        script = (
            "import os\nfrom safetensors import safe_open\n" + code.format(path=str(path)) + "\n"
            "print('read;', int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) // 1024)"
        )
        start = time.perf_counter()
        try:
            out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
            lines = (out.stdout + out.stderr).strip().splitlines() or [""]
            said, exit_code, peak = lines[-1].split("SafetensorError: ")[-1][:90], str(out.returncode), "-"
            if said.startswith("read;"):
                said, peak = "(read without complaint)", said.split(";")[1].strip()
            elif out.returncode < 0:
                said = f"killed by signal {-out.returncode}"
        except subprocess.TimeoutExpired:
            said, exit_code, peak = "(still blocked in open after 20 s)", "timeout", "-"
        seconds = time.perf_counter() - start
        print(f"| {name} | {exit_code} | {seconds:.1f} | {peak} | {said} | {ours} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1000, 20000], help="numbers of images (default: %(default)s)"
    )
    parser.add_argument("--side", type=int, default=64, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS),
                        help="formats to compare (default: all)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=1, help="runs of each format, alternated (default: 1)")
    parser.add_argument("--probe_safetensors", action="store_true",
                        help="run safetensors on hostile files instead (default: off)")  # fmt: skip
    args = parser.parse_args()
    if args.probe_safetensors:
        with tempfile.TemporaryDirectory() as tmp:
            probe_safetensors(Path(tmp))
        return
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
