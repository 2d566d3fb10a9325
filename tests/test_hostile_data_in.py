"""Hostile and broken data through the data-ingestion entry points: image folders (`from-folder`), parquet files,
Arrow IPC streams and `save_to_disk` folders (`from-hf`), task folders (`convert`, `info`, `main_ddpm.py
--data_path`).

Every case (tests/hostile_data.py builds them) runs `python -m continual_diffusers.data`'s (or main_ddpm.py's)
`main(argv)` in a subprocess under RLIMIT_AS = its address space after the imports + 1 GiB (tests/hostile_files.py's
runner), where a native crash shows as a missing result and a negative exit status. Each must end with exit code 2
and exactly one `error: …` line naming the problem, no traceback, no control character from a file name on the
terminal, nothing created or changed in its folder (the output dir is not created), nothing executed, in < 30 s.
Cases whose input is a FIFO run in a process of their own: each has a 10 s alarm, and the process a timeout, so a
reader that blocks on a FIFO fails the test rather than hanging it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hostile_data as d
import pytest
from conftest import TINY_FLAGS
from test_hostile_task_files import assert_one_error_line

pytest.importorskip("pyarrow")

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MIB = 1024
PRELOAD = ["pyarrow", "pyarrow.ipc", "pyarrow.parquet", "PIL.Image", "PIL.PngImagePlugin"]
FIFO_CASE_TIMEOUT_S = 10


def tree_state(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder` (not following symlinks, iteratively: some cases nest 1,100 folders): its type and
    size, and the SHA-256 of regular files of at most 64 MiB (a sparse 5 GiB file is compared by size and mtime)."""
    state, stack = {}, [str(folder)]
    while stack:
        top = stack.pop()
        with os.scandir(top) as entries:
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                key = os.path.relpath(entry.path, folder)
                digest = None
                if stat.S_ISREG(info.st_mode) and info.st_size <= 64 * 2**20:
                    digest = hashlib.sha256(Path(entry.path).read_bytes()).hexdigest()
                elif stat.S_ISREG(info.st_mode):
                    digest = info.st_mtime_ns
                state[key] = (stat.S_IFMT(info.st_mode), info.st_size if digest else 0, digest)
                if stat.S_ISDIR(info.st_mode):
                    stack.append(entry.path)
    return state


@dataclass
class Case:
    id: str
    module: str
    argv: list
    expected: str
    folder: Path
    fifo: bool
    before: dict = field(default_factory=dict)


def _build(root: Path) -> dict[str, Case]:
    cases = {}
    for name, builder, fifo in d.CASES:
        folder = root / name
        folder.mkdir(parents=True)
        argv, expected = builder(folder)
        module = d.DATA_CLI
        if argv[0] == "main_ddpm":
            module, argv = "main_ddpm", [*argv[1:], *TINY_FLAGS, "--output_dir", folder / "out"]
        elif argv[0] in ("from-folder", "from-hf"):
            argv = [*argv, "--output_dir", folder / "out"]
        argv = [os.fsdecode(a) if isinstance(a, Path) else str(a) for a in argv]
        cases[name] = Case(name, module, argv, expected, folder, fifo)
    return cases


def _run(cases: list[Case], where: Path, timeout: int, case_timeout: int = 0) -> tuple[int | None, dict, str]:
    where.mkdir()
    spec, results = where / "spec.json", where / "results.jsonl"
    runs = [{"id": c.id, "module": c.module, "argv": c.argv, "timeout_s": case_timeout} for c in cases]
    spec.write_text(json.dumps({"cases": runs, "limit_mib": LIMIT_MIB, "preload": PRELOAD}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(ROOT / "tests" / "hostile_files.py"), str(spec), str(results)]
    try:
        proc = subprocess.run(command, cwd=where, env=env, capture_output=True, text=True, timeout=timeout)
        code, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as expired:
        code, stderr = None, f"timed out after {timeout} s: {expired.stderr}"
    records = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    return code, {r["id"]: r for r in records}, stderr


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_data")
    cases = _build(root / "cases")
    for case in cases.values():
        case.before = tree_state(case.folder)
    plain = [c for c in cases.values() if not c.fifo]
    fifos = [c for c in cases.values() if c.fifo]
    try:
        runs = {
            "plain": _run(plain, root / "plain", timeout=600),
            "fifo": _run(fifos, root / "fifo", timeout=FIFO_CASE_TIMEOUT_S * len(fifos) + 60, case_timeout=10),
        }
        yield cases, runs
    finally:
        d.remove_deep_nesting(cases["folder_deep_nesting"].folder)


def test_corpus_size():
    assert len(d.CASES) >= 35 and len({name for name, _, _ in d.CASES}) == len(d.CASES)


@pytest.mark.parametrize("group", ["plain", "fifo"])
def test_runner_did_not_crash_or_hang(corpus, group):
    cases, runs = corpus
    code, records, stderr = runs[group]
    expected = sorted(c.id for c in cases.values() if c.fifo == (group == "fifo"))
    assert code == 0, f"exit {code} after {list(records)[-1:]}: {stderr[-3000:]}"
    assert sorted(records) == expected


@pytest.mark.parametrize("case_id", [name for name, _, _ in d.CASES])
def test_refused_in_one_line_and_nothing_written(corpus, case_id):
    cases, runs = corpus
    case = cases[case_id]
    code, records, stderr = runs["fifo" if case.fifo else "plain"]
    assert case_id in records, f"no result (runner exit {code}): {stderr[-3000:]}"
    record = records[case_id]
    assert record["error"] is None and record["code"] == 2, record
    assert_one_error_line(record["stderr"], case.expected)
    assert record["stdout"] == ""
    shown = record["stderr"].replace("\n", "")
    assert shown.isprintable(), f"control characters reach the terminal: {record['stderr']!r}"
    assert record["seconds"] < 30
    assert tree_state(case.folder) == case.before  # no output dir, inputs untouched, no marker file
    assert not (case.folder / "pwned").exists()


def test_the_command_itself_survives_a_crashing_arrow_file_and_a_fifo(tmp_path):
    """`python -m continual_diffusers.data from-hf` as a user runs it: an Arrow stream with offsets past its buffers
    (a native crash when read blindly) and, separately, an image that is a FIFO (a hang)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for builder in (d.hf_arrow_offsets_past_buffer, d.folder_fifo_image):
        folder = tmp_path / builder.__name__
        folder.mkdir()
        argv, expected = builder(folder)
        command = [sys.executable, "-m", "continual_diffusers.data", *map(str, argv), "--output_dir", folder / "o"]
        proc = subprocess.run(list(map(str, command)), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and proc.stdout == "", (proc.returncode, proc.stderr[-2000:])
        assert_one_error_line(proc.stderr, expected)
        assert not (folder / "o").exists()
