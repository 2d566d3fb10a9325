"""The pieces behind the hostile-data corpus (tests/test_hostile_data_in.py), one behaviour each, in-process: escaping
file-derived text, opening files that may be FIFOs, the data limits (constants, environment, argument), the symlink
policy of image folders, class ids without names, rows that share one stored image, and the all-or-nothing output.
"""

from __future__ import annotations

import os
import re
import signal
from contextlib import contextmanager
from pathlib import Path

import hostile_data as d
import numpy as np
import pytest
from conftest import make_tasks

from continual_diffusers.data import load_tasks, save_tasks
from continual_diffusers.data.__main__ import main as data_main
from continual_diffusers.data.limits import ENV, DataLimits
from continual_diffusers.utils.display import safe_display
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.files import NotRegularFileError, open_regular_file, read_regular_file


@contextmanager
def deadline(seconds: int = 10):
    """Fail (TimeoutError) instead of hanging if the block blocks, e.g. on opening a FIFO."""

    def expire(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = data_main([os.fsdecode(a) if isinstance(a, Path) else str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------------- safe_display
@pytest.mark.parametrize(
    "text, shown",
    [
        ("plain/name.png", "plain/name.png"),
        ("été 漢字 ok", "été 漢字 ok"),  # letters of any script are shown as they are
        ("\x1b[2J\x1b]0;t\x07x", "\\x1b[2J\\x1b]0;t\\x07x"),  # ANSI: clear screen, retitle terminal, bell
        ("a\nerror: forged", "a\\nerror: forged"),
        ("tab\there\r", "tab\\there\\r"),
        ("file\u202egnp.exe", "file\\u202egnp.exe"),  # right-to-left override
        ("caf" + b"\xe9".decode("utf-8", "surrogateescape"), "caf\\xe9"),  # a byte that is not UTF-8
        ("\x9b31m\x7f", "\\x9b31m\\x7f"),  # C1 CSI and DEL
    ],
)
def test_safe_display_escapes_what_a_terminal_would_act_on(text, shown):
    assert safe_display(text) == shown
    assert safe_display(text).isprintable()


def test_safe_display_cuts_long_text():
    assert safe_display("x" * 500, 10) == "x" * 10 + "..." and safe_display("short", 10) == "short"


# ------------------------------------------------------------------------------------------------- regular files
def test_open_regular_file_refuses_fifos_devices_and_folders_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with deadline():
        for path, kind in [(tmp_path / "fifo", "a FIFO"), ("/dev/null", "a character device"), (tmp_path, "a folder")]:
            with pytest.raises(NotRegularFileError, match=f"^{kind}, not a regular file$"):
                open_regular_file(path)
    (tmp_path / "small").write_bytes(b"12345")
    with open_regular_file(tmp_path / "small") as file:
        assert file.read() == b"12345"
    assert read_regular_file(tmp_path / "small", 5) == b"12345"
    with pytest.raises(NotRegularFileError, match="5 bytes, more than the 4 allowed"):
        read_regular_file(tmp_path / "small", 4)


def test_a_fifo_swapped_in_after_the_stat_is_refused_on_the_descriptor(tmp_path, monkeypatch):
    """The path is checked with stat, then opened O_NONBLOCK and checked again with fstat: a FIFO that replaces the
    file between the two (simulated: stat reports the regular file it replaced) neither blocks nor is read."""
    (tmp_path / "regular").write_bytes(b"x")
    os.mkfifo(tmp_path / "swapped")
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: real_stat(tmp_path / "regular"))
    with deadline(), pytest.raises(NotRegularFileError, match="a FIFO"):
        open_regular_file(tmp_path / "swapped")


def test_a_task_folder_file_swapped_for_a_fifo_mid_run_is_refused_not_waited_on(tmp_path):
    save_tasks(tmp_path / "t", make_tasks(), layout="folder")
    tasks = load_tasks(tmp_path / "t")
    images = tasks[1].images
    assert images[:2].shape == (2, 8, 8, 3)  # read lazily, before the swap
    path = tmp_path / "t" / "task_1" / "images.npy"
    os.mkfifo(tmp_path / "fifo")
    os.replace(tmp_path / "fifo", path)
    expected = re.escape("(a FIFO, not a regular file); load the task folder again")
    with deadline(), pytest.raises(UserInputError, match=expected):
        images[:2]


# ------------------------------------------------------------------------------------------------- limits
def test_limits_come_from_constants_environment_and_argument(tmp_path, monkeypatch, capsys):
    root = d.image_folder(tmp_path / "root")  # 8x8 images: 64 pixels
    assert DataLimits.from_env() == DataLimits()
    monkeypatch.setenv(ENV["image_pixels"], "63")
    assert DataLimits.from_env().image_pixels == 63
    code, _, err = run(capsys, "from-folder", root, "--classes_per_task", 1, "--output_dir", tmp_path / "o")
    assert code == 2 and "8x8 = 64 pixels, more than the limit of 63 ($CONTINUAL_DIFFUSERS_MAX_IMAGE_PIXELS)" in err
    monkeypatch.setenv(ENV["image_pixels"], "lots")
    code, _, err = run(capsys, "from-folder", root, "--classes_per_task", 1, "--output_dir", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1 and "must be a positive whole number, got 'lots'" in err
    monkeypatch.delenv(ENV["image_pixels"])
    from continual_diffusers.data import BuildOptions, build_task_files, scan_image_folder

    tight = DataLimits(images=3)
    with pytest.raises(UserInputError, match="more than the limit of 3 .* images"):
        scan_image_folder(root, tight)
    with pytest.raises(UserInputError, match="DataLimits.images must be an int >= 1"):
        DataLimits(images=0)
    source = scan_image_folder(root)
    expected = re.escape("more than the limit of 100 ($CONTINUAL_DIFFUSERS_MAX_DATASET_BYTES)")
    with pytest.raises(UserInputError, match=expected):
        build_task_files(source, BuildOptions(classes_per_task=1), tmp_path / "o", "x", DataLimits(dataset_bytes=100))
    assert not (tmp_path / "o").exists()


def test_captions_are_sized_before_anything_is_decoded(tmp_path, monkeypatch, capsys):
    """The labels' size (captions padded to the longest) counts against the task-file cap before decoding."""
    root = d.image_folder(tmp_path / "root")
    monkeypatch.setenv("CONTINUAL_DIFFUSERS_MAX_TASK_FILE_BYTES", "2000")  # 4 images of 192 bytes fit; labels not
    argv = ["from-folder", root, "--classes_per_task", 1, "--output_dir", tmp_path / "o", "--caption_template",
            "a photo of a " + "very " * 40 + "{}"]  # fmt: skip
    code, _, err = run(capsys, *argv)
    assert code == 2 and "of images and labels, more than one .npz task file may" in err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------- image folders
def test_symlinks_inside_the_folder_are_followed(tmp_path, capsys):
    """A file symlink, and a folder symlink into a hidden pool, both resolving inside the root, are images."""
    root = d.image_folder(tmp_path / "root")
    (root / ".pool").mkdir()
    (root / ".pool" / "x.png").write_bytes(d.png_bytes(seed=5))
    os.symlink("../b/0.png", root / "a" / "copy_of_b0.png")
    os.symlink("../.pool", root / "b" / "pooled")
    code, out, err = run(capsys, "from-folder", root, "--classes_per_task", 1, "--output_dir", tmp_path / "o")
    assert code == 0, err
    tasks = load_tasks(tmp_path / "o" / "root_tasks_train.npz")
    assert [len(t) for t in tasks] == [3, 3]
    np.testing.assert_array_equal(tasks[1].images[2], tasks[2].images[0])  # a/copy_of_b0.png is b/0.png


def test_class_names_from_file_names_are_printed_escaped_and_stored_as_they_are(tmp_path, capsys):
    root = d.image_folder(tmp_path / "root", {"\x1b[31mred": 1, "plain": 1})
    code, out, _ = run(capsys, "from-folder", root, "--classes_per_task", 1, "--output_dir", tmp_path / "o")
    assert code == 0 and "\x1b" not in out and "0 (\\x1b[31mred)" in out
    assert load_tasks(tmp_path / "o" / "root_tasks_train.npz").class_names == ("\x1b[31mred", "plain")
    code, info, _ = run(capsys, "info", tmp_path / "o" / "root_tasks_train.npz")
    assert code == 0 and "\x1b" not in info and "\\x1b[31mred" in info


def test_a_refused_build_leaves_an_existing_output_folder_as_it_was(tmp_path, capsys):
    """Staged output: the train file of a previous run stays, the new one (broken test image) is not written."""
    root = d.image_folder(tmp_path / "root", {"a": 3, "b": 3})
    out = tmp_path / "o"
    argv = ["from-folder", root, "--classes_per_task", 1, "--output_dir", out, "--test_fraction", 0.34]
    assert run(capsys, *argv)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for name in ("0.png", "1.png", "2.png"):
        (root / "b" / name).write_bytes((root / "b" / name).read_bytes()[:60])
    code, _, err = run(capsys, *argv)
    assert code == 2 and "unreadable image" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_name_must_be_a_plain_file_name(tmp_path, capsys):
    root = d.image_folder(tmp_path / "root")
    code, _, err = run(capsys, "from-folder", root, "--classes_per_task", 1, "--output_dir", tmp_path / "o",
                       "--name", "../escaped")  # fmt: skip
    assert code == 2 and "--name must be a plain file name" in err
    assert not (tmp_path / "escaped_tasks_train.npz").exists()


# ------------------------------------------------------------------------------------------------- from-hf
def test_class_ids_without_names_get_no_invented_names(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(d.hf_table(pa, 4, labels=pa.array([7, 7, 900_000, 900_000])), tmp_path / "ids.parquet")
    code, out, err = run(capsys, "from-hf", tmp_path / "ids.parquet", "--classes_per_task", 1, "--output_dir",
                         tmp_path / "o", "--caption_template", "class {}")  # fmt: skip
    assert code == 0, err
    tasks = load_tasks(tmp_path / "o" / "ids_tasks_train.npz")
    assert tasks.class_names is None and tasks.class_order == (7, 900_000)
    assert tasks[2].labels.tolist() == ["class 900000", "class 900000"]
    assert "class order: task 1: 7; task 2: 900000" in out


def test_string_labels_across_files_with_different_dictionaries(tmp_path, capsys):
    """Two parquet files (each read with its own label dictionary) and their class ids: one sorted name list."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    (tmp_path / "data").mkdir()
    pq.write_table(d.hf_table(pa, 4, labels=pa.array(["dog", "cat", "dog", "cat"])), tmp_path / "data" / "a.parquet")
    pq.write_table(d.hf_table(pa, 4, labels=pa.array(["eel", "eel", "cat", "cat"])), tmp_path / "data" / "b.parquet")
    from continual_diffusers.data import read_hf_dataset

    source = read_hf_dataset(tmp_path / "data")
    assert source.class_names == ["cat", "dog", "eel"]
    assert source.labels.tolist() == [1, 0, 1, 0, 2, 2, 0, 0]


def test_the_dataset_limit_counts_all_files_together(tmp_path):
    """Each of two files fits the dataset limit, both together do not; a file listed twice in state.json is refused."""
    pa = pytest.importorskip("pyarrow")
    from continual_diffusers.data import read_hf_dataset

    (tmp_path / "data").mkdir()
    for name in ("a", "b"):
        (tmp_path / "data" / f"{name}.arrow").write_bytes(d.arrow_stream_bytes(d.hf_table(pa, 4)))
    size = (tmp_path / "data" / "a.arrow").stat().st_size
    read_hf_dataset(tmp_path / "data", limits=DataLimits(dataset_bytes=2 * size))
    with pytest.raises(UserInputError, match="b.arrow: .* bytes, more than the"):
        read_hf_dataset(tmp_path / "data", limits=DataLimits(dataset_bytes=2 * size - 1))
    dataset = d._save_to_disk(tmp_path, d.hf_table(pa, 2))
    (dataset / "state.json").write_text('{"_data_files": [{"filename": "data-00000-of-00001.arrow"}, '
                                        '{"filename": "data-00000-of-00001.arrow"}]}')  # fmt: skip
    with pytest.raises(UserInputError, match="distinct file names"):
        read_hf_dataset(dataset)


def test_rows_sharing_one_stored_image_are_decoded_once(tmp_path, capsys, monkeypatch):
    """5,000 rows that refer to one dictionary value: one header read and one decode, not 5,000 of each."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from continual_diffusers.data import builder

    images = pa.DictionaryArray.from_arrays(pa.array(np.zeros(5000, np.int32)), pa.array([d.png_bytes()], pa.binary()))
    table = pa.table({"image": images, "label": pa.array(np.arange(5000) % 2)})
    pq.write_table(table, tmp_path / "same.parquet")
    calls = {"decode": 0}
    real_decode = builder.decode

    def counted(*args, **kwargs):
        calls["decode"] += 1
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(builder, "decode", counted)
    code, _, err = run(capsys, "from-hf", tmp_path / "same.parquet", "--classes_per_task", 2, "--output_dir",
                       tmp_path / "o")  # fmt: skip
    assert code == 0, err
    tasks = load_tasks(tmp_path / "o" / "same_tasks_train.npz")
    assert len(tasks[1]) == 5000 and (tasks[1].images == tasks[1].images[0]).all()
    assert calls["decode"] == 1


def test_dataset_files_and_image_paths_inside_the_folder_are_read(tmp_path, capsys):
    """A datasets.Image row without bytes names a file next to the data: relative, inside the folder, is fine."""
    pa = pytest.importorskip("pyarrow")
    path = d._with_image_path(tmp_path, "images/1.png")
    (tmp_path / "data" / "images").mkdir()
    (tmp_path / "data" / "images" / "1.png").write_bytes(d.png_bytes(seed=1))
    del pa
    code, _, err = run(capsys, "from-hf", path, "--classes_per_task", 1, "--output_dir", tmp_path / "o")
    assert code == 0, err


# ------------------------------------------------------------------------------------------------- convert
@pytest.mark.slow
def test_convert_streams_a_task_folder_larger_than_the_memory_limit_into_an_npz(tmp_path):
    """A 1.5 GiB (sparse) task folder converted to .npz in a process limited to its footprint + 1 GiB: the images
    are copied block by block (the earlier convert read the whole folder into memory)."""
    import json
    import subprocess
    import sys

    save_tasks(tmp_path / "t", make_tasks(), layout="folder")
    count = 3 * 2**29 // 192  # 1.5 GiB of 8x8x3 images
    header = d.io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (count, 8, 8, 3)})
    with open(tmp_path / "t" / "task_1" / "images.npy", "wb") as file:
        file.write(header.getvalue())
        file.truncate(len(header.getvalue()) + count * 192)
    for task in (1, 2):
        (tmp_path / "t" / f"task_{task}" / "labels.npy").unlink()
    argv = ["convert", str(tmp_path / "t"), str(tmp_path / "t.npz")]
    spec = {"limit_mib": 1024, "cases": [{"id": "convert", "module": d.DATA_CLI, "argv": argv}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, str(root / "tests" / "hostile_files.py"), str(tmp_path / "spec.json"),
               str(tmp_path / "results.jsonl")]  # fmt: skip
    subprocess.run(command, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600, check=True)
    record = json.loads((tmp_path / "results.jsonl").read_text())
    assert record["code"] == 0 and record["error"] is None, record
    assert os.path.getsize(tmp_path / "t.npz") > count * 192
