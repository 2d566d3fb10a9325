"""Seeded fuzzing of the task-file readers (slow suite): mutated legacy task files (their pickle), safe task files
(their .npy members, rezipped with valid CRCs, and their raw zip bytes) and CIFAR-10 batches; and of data ingestion:
mutated parquet files and Arrow streams (whole-file bytes), intact ones holding a mutated PNG, and image folders
holding one, each converted by from-hf's / from-folder's reader and `build_task_files`.

Mutations: byte flips, truncation, opcode splicing (a random opcode with random argument bytes inserted at an opcode
boundary of the original pickle), segment duplication and deletion; and random programs from the reader's own
vocabulary (its globals, dtypes, arrays, structural and memo opcodes), which reach its pattern checks more often.
All files are loaded in one subprocess under RLIMIT_AS (address space after imports + 1 GiB), so a segfault or a
memory blow-up shows: every load must succeed or raise the readers' own error (TaskFileError for task files, a
UserInputError for CIFAR batches and conversions), never another exception, and never through the loader's safety
net ("cannot be read: unexpected ...": an unforeseen failure caught rather than checked for).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import subprocess
import sys
import zipfile
from pathlib import Path

import hostile_data as d
import hostile_files as h
import numpy as np
import pytest

from continual_diffusers.data.tasks import FORMAT

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SEED = 20261129
MUTANTS_PER_SEED = 100
OPCODES = [op.code.encode("latin-1") for op in pickletools.opcodes]


def _tasks() -> dict:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    return {
        1: {"images": images, "labels": np.array([0, 1, 1])},
        2: {"images": list(images[:2]), "labels": [2, 3]},
        3: {"images": np.asfortranarray(images), "labels": (4, 5, 4)},
    }


def pickle_seeds() -> dict[str, bytes]:
    seeds = {f"legacy_p{protocol}": pickle.dumps(_tasks(), protocol=protocol) for protocol in (0, 2, 4, 5)}
    captions = {1: {"images": _tasks()[1]["images"], "labels": ["a cat", "a dog", "é"]}}
    seeds["legacy_captions_p3"] = pickle.dumps(captions, protocol=3)
    return seeds


def npy_seeds() -> dict[str, bytes]:
    tasks = _tasks()
    return {
        "format.npy": h.npy_bytes(np.array(FORMAT)),
        "task_1/images.npy": h.npy_bytes(tasks[1]["images"]),
        "task_1/labels.npy": h.npy_bytes(tasks[1]["labels"]),
        "task_3/images.npy": h.npy_bytes(tasks[3]["images"]),
    }


def cifar_seed() -> bytes:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    return h.py2_pickle({b"batch_label": b"batch", b"labels": [0, 9, 3, 3], b"data": data})


def opcode_boundaries(data: bytes) -> list[int]:
    return [position for _, _, position in pickletools.genops(data)]


def mutate(data: bytes, rng: np.random.Generator, boundaries: list[int] | None = None) -> bytes:
    data = bytearray(data)
    kind = rng.choice(["flip", "truncate", "splice", "duplicate", "delete"])
    if kind == "flip":
        for position in rng.integers(0, len(data), rng.integers(1, 5)):
            data[position] = rng.integers(0, 256)
    elif kind == "truncate":
        del data[rng.integers(0, len(data)) :]
    elif kind == "splice":
        position = int(rng.choice(boundaries)) if boundaries else int(rng.integers(0, len(data)))
        insert = (
            OPCODES[rng.integers(len(OPCODES))] + rng.integers(0, 256, rng.integers(0, 9), dtype=np.uint8).tobytes()
        )
        data[position:position] = insert
    else:
        start = int(rng.integers(0, len(data)))
        end = min(len(data), start + int(rng.integers(1, 64)))
        segment = bytes(data[start:end])
        if kind == "delete":
            del data[start:end]
        else:
            at = int(rng.integers(0, len(data)))
            data[at:at] = segment
    return bytes(data)


GLOBALS = [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("collections", "OrderedDict"),
           ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytes"), ("builtins", "bytearray"),
           ("builtins", "complex"), (h.MULTIARRAY, "_reconstruct"), (h.MULTIARRAY, "scalar"),
           ("numpy._core.numeric", "_frombuffer")]  # fmt: skip
STRUCTURE = [h.MARK, h.TUPLE, h.TUPLE1, h.TUPLE2, h.TUPLE3, h.REDUCE, h.BUILD, h.EMPTY_LIST, h.EMPTY_DICT,
             h.EMPTY_SET, h.APPEND, h.APPENDS, h.SETITEM, h.SETITEMS, h.ADDITEMS, h.DUP, h.POP, h.NONE, h.TRUE,
             h.EMPTY_TUPLE, b"\x91", b"l", b"d", b"1"]  # fmt: skip


def random_program(rng: np.random.Generator) -> bytes:
    """A pickle of 1-40 random pieces of the reader's own vocabulary: its globals, odd ints, dtype strings, bytes,
    whole dtypes and arrays, and structural opcodes (memo included)."""
    pieces = []
    for _ in range(rng.integers(1, 41)):
        kind = rng.integers(0, 8)
        if kind == 0:
            pieces.append(h.glob(*GLOBALS[rng.integers(len(GLOBALS))]))
        elif kind == 1:
            pieces.append(h.integer(int(rng.choice([0, 1, -1, 3, 8, 2**31, 10**12, -(10**12), 2**64, 10**40]))))
        elif kind == 2:
            pieces.append(h.text(str(rng.choice(["b", "C", "F", "latin1", "i8", "u1", "U2", "S3", "<", ">", "O8"]))))
        elif kind == 3:
            pieces.append(h.raw(rng.integers(0, 256, rng.integers(0, 17), dtype=np.uint8).tobytes()))
        elif kind == 4:
            pieces.append(h.dtype(str(rng.choice(["i8", "u1", "U2", "S3", "f4", "b1"])), str(rng.choice(["<", ">"]))))
        elif kind == 5:
            pieces.append(h.images_ops())
        elif kind == 6:
            pieces.append((h.put if rng.integers(2) else h.get)(int(rng.integers(0, 4))))
        else:
            pieces.append(STRUCTURE[rng.integers(len(STRUCTURE))])
    return h.PROTO2 + b"".join(pieces) + h.STOP


def _safe_file(path: Path, members: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return str(path)


def build_corpus(folder: Path) -> list[dict]:
    rng = np.random.default_rng(SEED)
    files = []
    for name, data in pickle_seeds().items():
        boundaries = opcode_boundaries(data)
        for i in range(MUTANTS_PER_SEED):
            path = h.write_legacy(folder / f"{name}_{i}.npz", mutate(data, rng, boundaries))
            files.append({"kind": "task", "path": path})
    members = npy_seeds()
    for name in members:
        for i in range(MUTANTS_PER_SEED):
            mutated = {**members, name: mutate(members[name], rng)}
            files.append(
                {"kind": "task", "path": _safe_file(folder / f"npy_{name.replace('/', '_')}_{i}.npz", mutated)}
            )
    for compress in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compress) as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        for i in range(MUTANTS_PER_SEED):
            path = folder / f"zip{compress}_{i}.npz"
            path.write_bytes(mutate(buffer.getvalue(), rng))
            files.append({"kind": "task", "path": str(path)})
    for i in range(5 * MUTANTS_PER_SEED):
        files.append({"kind": "task", "path": h.write_legacy(folder / f"program_{i}.npz", random_program(rng))})
    files += data_in_corpus(folder, rng)
    cifar = cifar_seed()
    boundaries = opcode_boundaries(cifar)
    for i in range(2 * MUTANTS_PER_SEED):
        path = folder / f"cifar_{i}"
        path.write_bytes(mutate(cifar, rng, boundaries))
        files.append({"kind": "cifar", "path": str(path)})
    return files


def _hf_seed(pa, images: list[bytes]):
    """A from-hf table: images (datasets.Image structs), string labels, and ClassLabel-style metadata."""
    table = d.hf_table(pa, len(images), labels=pa.array(["cat", "dog"] * (len(images) // 2)),
                       images=d._image_struct(pa, images))  # fmt: skip
    return table.replace_schema_metadata({"huggingface": '{"info": {"features": {"label": {"names": ["x"]}}}}'})


def data_in_corpus(folder: Path, rng: np.random.Generator) -> list[dict]:
    """Mutated parquet files and Arrow streams (their bytes), intact ones holding a mutated PNG, and image folders
    holding a mutated PNG or JPEG; each is converted by from-hf / from-folder."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pngs = [d.png_bytes(6, 5, seed=i) for i in range(4)]
    table = _hf_seed(pa, pngs)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    seeds = {".parquet": buffer.getvalue(), ".arrow": d.arrow_stream_bytes(table)}
    jpeg = d.jpeg_claiming(8, 8)
    files = []
    for i in range(MUTANTS_PER_SEED):
        for suffix, data in seeds.items():
            path = folder / f"hf_{i}{suffix}"
            path.write_bytes(mutate(data, rng))
            files.append({"kind": "hf", "path": str(path)})
        bad_image = mutate(pngs[i % 4], rng)
        path = folder / f"hf_png_{i}.parquet"
        pq.write_table(_hf_seed(pa, [bad_image, *pngs[1:]]), path)
        files.append({"kind": "hf", "path": str(path)})
        root = d.image_folder(folder / f"folder_{i}", {"a": 1, "b": 1})
        name, original = ("0.png", pngs[0]) if i % 2 else ("0.jpg", jpeg)
        (root / "a" / name).write_bytes(mutate(original, rng))
        files.append({"kind": "folder", "path": str(root)})
    return files


def test_mutated_task_files_fail_cleanly_or_load(tmp_path):
    files = build_corpus(tmp_path)
    assert len(files) >= 1500
    spec, results = tmp_path / "spec.json", tmp_path / "results.jsonl"
    spec.write_text(json.dumps({"files": files, "limit_mib": 1024}))
    command = [sys.executable, str(ROOT / "tests" / "hostile_files.py"), str(spec), str(results)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert proc.returncode == 0 and len(records) == len(files), (proc.returncode, len(records), proc.stderr[-3000:])
    allowed = {"task": {"ok", "TaskFileError"}, "cifar": {"ok", "UserInputError"}, "hf": {"ok", "UserInputError"},
               "folder": {"ok", "UserInputError"}}  # fmt: skip
    bad = [
        r for r in records if r["outcome"] not in allowed[r["kind"]] or "cannot be read: unexpected" in r["message"]
    ]
    assert not bad, bad[:5]
    assert max(r["seconds"] for r in records) < 10
    for kind in allowed:  # the mutations reach both sides of every reader
        assert {r["outcome"] for r in records if r["kind"] == kind} == allowed[kind], kind
