"""Hostile task files (code execution, memory and CPU bombs) through the real entry points.

Every case must end with exit code 2 and exactly one `error: …` line (no traceback), run nothing (the marker file a
payload tries to create stays absent), leave the output directory byte-identical and take < 30 s. The code-execution
payloads use only what the pickle reader accepts (numpy dtype/ndarray/_reconstruct/scalar/_frombuffer, builtins,
OrderedDict, BUILD, SETITEMS, APPENDS, ADDITEMS); with the earlier allow-list unpickler most of them segfaulted
(exit 139: an object pointer read from bytes). They run in-process through `python -m continual_diffusers.data`
(`info` and `convert`) and the CIFAR-10 script; the bombs and a few payloads go through `main_ddpm.py`,
`main_ldm.py`, the data CLI and `create_cifar10_data_example.py` in one subprocess under RLIMIT_AS = its address
space after the imports + 1 GiB, where a crash shows as a missing result and a negative exit status.

Payloads, bombs and the subprocess runner: tests/hostile_files.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import pickletools
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hostile_files as h
import numpy as np
import pytest
from conftest import TINY_FLAGS

from continual_diffusers.data.__main__ import main as data_main

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MIB = 1024
DATA_CLI = "continual_diffusers.data.__main__"
CIFAR = "create_cifar10_data_example"


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        for path in sorted(folder.rglob("*"))
    }


def output_dir(folder: Path) -> Path:
    """An output directory that already holds a file, to check that a refused run leaves it as it was."""
    folder.mkdir(parents=True)
    (folder / "sentinel.txt").write_text("written before the run\n")
    return folder


def assert_one_error_line(stderr: str, expected: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], stderr[-2000:]
    assert "Traceback" not in stderr and stderr.rstrip().endswith(errors[0]), stderr[-2000:]


@pytest.fixture(scope="module")
def cifar_script():
    spec = importlib.util.spec_from_file_location(CIFAR, ROOT / f"{CIFAR}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cifar_folder(folder: Path, batch: bytes) -> Path:
    """A CIFAR-10 "python batches" folder whose first training batch is `batch`."""
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    (batches / "data_batch_1").write_bytes(batch)
    return folder


# ---------------------------------------------------------------------------------------------------------------------
# Code-execution attempts, in-process


@pytest.mark.parametrize("case", h.CODE_EXEC, ids=[case[0] for case in h.CODE_EXEC])
def test_code_execution_attempt_is_refused(case, tmp_path, capsys):
    _, build, expected = case
    marker = tmp_path / "pwned"
    payload = build(str(marker))
    pickletools.dis(payload, out=io.StringIO())  # a well-formed pickle: refused for what it does, not its syntax
    path = h.write_legacy(tmp_path / "evil.npz", payload)
    out = output_dir(tmp_path / "out")
    before = snapshot(out)
    capsys.readouterr()
    assert data_main(["info", path]) == 2
    assert data_main(["convert", path, str(out / "converted.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and all(line.startswith(f"error: {path}: ") for line in err.splitlines()), err
    assert expected in err.splitlines()[0] and "Traceback" not in err
    assert not marker.exists() and snapshot(out) == before


@pytest.mark.parametrize("target", ["data_batch_1", "batches.meta"])
def test_cifar_code_execution_is_refused(cifar_script, target, tmp_path, capsys):
    """A payload in a training batch, or in batches.meta (read first, with --captions)."""
    marker = tmp_path / "pwned"
    attack = h.call(h.pointer_object(), f"touch {marker}")
    if target == "data_batch_1":
        cifar = cifar_folder(tmp_path / "cifar", h.cifar_batch(h.py2_str(b"x" * 3072), attack))
    else:
        cifar = cifar_folder(tmp_path / "cifar", h.py2_pickle({b"num_cases_per_batch": 1}))
        meta = h.PROTO2 + h.EMPTY_DICT + h.py2_str(b"label_names") + attack + h.SETITEM + h.STOP
        (cifar / "cifar-10-batches-py" / "batches.meta").write_bytes(meta)
    out = output_dir(tmp_path / "out")
    before = snapshot(out)
    captions = ["--captions"] if target == "batches.meta" else []
    assert cifar_script.main(["--cifar_dir", str(cifar), "--output_dir", str(out), *captions]) == 2
    assert_one_error_line(capsys.readouterr().err, f"{target}: refusing pickle opcode REDUCE")
    assert not marker.exists() and snapshot(out) == before


def test_corpus_sizes():
    """The corpus keeps at least 10 code-execution attempts and 8 memory bombs."""
    assert len(h.CODE_EXEC) >= 10 and len(h.BOMBS) >= 8


# ---------------------------------------------------------------------------------------------------------------------
# Memory bombs and end-to-end runs, in one subprocess under a memory limit


@dataclass
class Case:
    """One run in the subprocess, `module.main(argv)`, and what the test checks afterwards."""

    id: str
    module: str
    argv: list
    expected: str  # a fragment of the one error line
    out: Path | None = None  # an output dir that must stay byte-identical
    marker: Path | None = None  # the file a payload tries to create
    before: dict = field(default_factory=dict)


DDPM_BOMBS = ("task_id_10_12", "npy_header_10_12", "zip_8gib", "deep_tuple_key")


def _bomb_cases(root: Path) -> list[Case]:
    cases = []
    for name, build, expected in h.BOMBS:
        (root / name).mkdir()
        cases.append(Case(f"info-{name}", DATA_CLI, ["info", build(root / name)], expected))
    bombs = {name: (build, expected) for name, build, expected in h.BOMBS}
    for name in DDPM_BOMBS:
        build, expected = bombs[name]
        out = output_dir(root / f"main_ddpm-{name}" / "out")
        argv = [*TINY_FLAGS, "--data_path", build(out.parent), "--output_dir", out]
        cases.append(Case(f"main_ddpm-{name}", "main_ddpm", argv, expected, out))
    out = output_dir(root / "cifar-bomb" / "out")
    huge = h.array((10**9, 3072), h.dtype("u1"), bytes(3072))  # 3 TB claimed over 3 KB
    argv = ["--cifar_dir", cifar_folder(out.parent / "cifar", h.cifar_batch(huge, h.EMPTY_LIST)), "--output_dir", out]
    cases.append(Case("cifar-array_3tb", CIFAR, argv, "has 3072000000000 bytes, but the pickle holds 3072", out))
    return cases


def _payload_cases(root: Path) -> list[Case]:
    payloads = {name: (build, expected) for name, build, expected in h.CODE_EXEC}
    cases = []
    for module, name in (("main_ddpm", "scalar_pointer_call"), ("main_ldm", "object_array_reconstruct")):
        out = output_dir(root / module / "out")
        marker, (build, expected) = out.parent / "pwned", payloads[name]
        argv = ["--data_path", h.write_legacy(out.parent / "evil.npz", build(str(marker))), "--output_dir", out]
        argv += TINY_FLAGS if module == "main_ddpm" else ["--pretrained_model_name_or_path", out.parent / "no_model"]
        cases.append(Case(f"{module}-{name}", module, argv, expected, out, marker))
    out = output_dir(root / "convert" / "out")
    marker, (build, expected) = out.parent / "pwned", payloads["rebuild_finished_array"]
    argv = ["convert", h.write_legacy(out.parent / "evil.npz", build(str(marker))), out / "converted.npz"]
    cases.append(Case("convert-rebuild_finished_array", DATA_CLI, argv, expected, out, marker))
    out = output_dir(root / "cifar-code" / "out")
    marker = out.parent / "pwned"
    batch = h.cifar_batch(h.py2_str(b"x" * 3072), h.call(h.pointer_object(), f"touch {marker}"))
    argv = ["--cifar_dir", cifar_folder(out.parent / "cifar", batch), "--output_dir", out]
    cases.append(Case("cifar-scalar_pointer_call", CIFAR, argv, "object dtypes hold object pointers", out, marker))
    return cases


RUNNER_IDS = [
    *(f"info-{name}" for name, _, _ in h.BOMBS),
    *(f"main_ddpm-{name}" for name in DDPM_BOMBS),
    "cifar-array_3tb",
    "main_ddpm-scalar_pointer_call",
    "main_ldm-object_array_reconstruct",
    "convert-rebuild_finished_array",
    "cifar-scalar_pointer_call",
]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    cases = {case.id: case for case in [*_bomb_cases(root), *_payload_cases(root)]}
    for case in cases.values():
        case.before = snapshot(case.out) if case.out else {}
    spec, results = root / "spec.json", root / "results.jsonl"
    runs = [{"id": case.id, "module": case.module, "argv": [str(a) for a in case.argv]} for case in cases.values()]
    spec.write_text(json.dumps({"cases": runs, "limit_mib": LIMIT_MIB}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(ROOT / "tests" / "hostile_files.py"), str(spec), str(results)]
    proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    records = {r["id"]: r for r in map(json.loads, results.read_text().splitlines())} if results.exists() else {}
    return proc, records, cases


def test_runner_did_not_crash(runner):
    proc, records, cases = runner
    assert proc.returncode == 0, f"exit {proc.returncode} after {list(records)[-1:]}: {proc.stderr[-3000:]}"
    assert sorted(records) == sorted(cases) == sorted(RUNNER_IDS)


@pytest.mark.parametrize("case_id", RUNNER_IDS)
def test_refused_under_memory_limit(runner, case_id):
    proc, records, cases = runner
    assert case_id in records, f"no result (runner exit {proc.returncode}): {proc.stderr[-3000:]}"
    record, case = records[case_id], cases[case_id]
    assert record["error"] is None and record["code"] == 2, record
    assert_one_error_line(record["stderr"], case.expected)
    assert record["seconds"] < 30
    assert snapshot(case.out) == case.before if case.out else True
    assert not (case.marker and case.marker.exists())


def test_data_cli_process_refuses_a_payload(tmp_path):
    """`python -m continual_diffusers.data info` itself, as a user runs it."""
    marker = tmp_path / "pwned"
    path = h.write_legacy(tmp_path / "evil.npz", h.CODE_EXEC[0][1](str(marker)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "continual_diffusers.data", "info", path]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert_one_error_line(proc.stderr, "object dtypes hold object pointers")
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------------------
# The payloads are live: against an allow-list unpickler (what this project used before) most of them crash it

ALLOW_LIST_READER = """
import _compat_pickle, builtins, codecs, collections, io, pickle, sys
import numpy as np
try:
    from numpy._core import multiarray, numeric
except ImportError:
    from numpy.core import multiarray, numeric
ALLOWED = {("builtins", n): getattr(builtins, n) for n in ("set", "frozenset", "bytearray", "complex", "slice",
                                                            "range", "bytes")}
ALLOWED.update({("_codecs", "encode"): codecs.encode, ("collections", "OrderedDict"): collections.OrderedDict,
                ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype})
for package in ("numpy.core", "numpy._core"):
    ALLOWED.update({(package + ".multiarray", "_reconstruct"): multiarray._reconstruct,
                    (package + ".multiarray", "scalar"): multiarray.scalar,
                    (package + ".numeric", "_frombuffer"): numeric._frombuffer})

class AllowList(pickle.Unpickler):
    def find_class(self, module, name):
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        return ALLOWED[(_compat_pickle.IMPORT_MAPPING.get(module, module), name)]

from continual_diffusers.data import tasks_from_dict
try:
    tasks_from_dict(AllowList(io.BytesIO(open(sys.argv[1], "rb").read())).load())
except Exception as error:
    print(type(error).__name__)
"""


@pytest.mark.slow
def test_payloads_crash_an_allow_list_unpickler(tmp_path):
    """Not a test of this project's reader: evidence that the payloads above are real. Read by an unpickler that
    resolves only the globals they use (the previous reader) and then validated, most of them end the process with
    a signal (an object pointer made from the bytes 0x41414141...): exit 139 from a shell."""
    crashed = []
    for name, build, _ in h.CODE_EXEC:
        path = tmp_path / f"{name}.pickle"
        path.write_bytes(build(str(tmp_path / "pwned")))
        command = [sys.executable, "-W", "ignore", "-c", ALLOW_LIST_READER, str(path)]
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        if proc.returncode < 0:
            crashed.append(name)
    assert len(crashed) >= 8, crashed
    assert not (tmp_path / "pwned").exists()


MASK_CASES = [  # (name, member name, member bytes, message fragment)
    ("header_claims_10_12", "task_1/masks.npy", h.npy_header((10**12, 4, 4), "|u1") + bytes(16),
     "its header says shape (1000000000000, 4, 4)"),
    ("object_array", "task_1/masks.npy", h.npy_header((2,), "|O") + b"a pickle", "unexpected key 'task_1/masks'"),
    ("id_of_5000_digits", f"task_{'7' * 5000}/masks.npy", h.npy_bytes(np.zeros((1, 4, 4), np.uint8)),
     "unexpected key 'task_777"),
]  # fmt: skip


@pytest.mark.parametrize("case", MASK_CASES, ids=[case[0] for case in MASK_CASES])
def test_hostile_mask_files_are_one_error(tmp_path, case):
    """The object masks next to a shapes task file (read by slot evaluation) go through the same bounded reader."""
    from continual_diffusers.data import TaskFileError
    from continual_diffusers.data.shapes import MASKS_FORMAT, load_masks

    name, member, data, expected = case
    header = {"name": "format.npy", "data": h.npy_bytes(np.array(MASKS_FORMAT))}
    path = h.write_zip(tmp_path / f"{name}.masks.npz", [header, {"name": member, "data": data}])
    with pytest.raises(TaskFileError, match=re.escape(expected)):
        load_masks(path)
