"""Data in: image folders and local Hugging Face datasets → task files, class order as data, lazily read task folders.

Tiny inputs made here (a 3-class image folder with odd sizes and a grayscale image, a parquet file, a
`save_to_disk` folder when `datasets` is installed); each converted sequence loads, validates and trains 2 tasks.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tiny_sd
import torch
from conftest import TINY_FLAGS, make_tasks
from PIL import Image

import main_ddpm
from continual_diffusers.data import ImageTransform, ReplayBuffer, Reservoir, TaskDataset, load_tasks, save_tasks
from continual_diffusers.data.__main__ import main as data_main
from continual_diffusers.data.digits import load_split_digits
from continual_diffusers.data.lazy import LazyImages, PreparedImages
from continual_diffusers.data.tasks import TaskFileError

ROOT = Path(__file__).resolve().parent.parent
tiny_sd_dir = tiny_sd.tiny_sd_dir  # shared session fixture

# class → [(width, height, mode)]: odd sizes, one grayscale image among RGB ones
FOLDER = {
    "cat": [(9, 7, "RGB"), (8, 8, "RGB"), (11, 9, "L")],
    "dog": [(7, 9, "RGB"), (10, 10, "RGB"), (9, 9, "RGB")],
    "eel": [(8, 11, "RGB"), (12, 9, "RGB"), (9, 8, "RGB")],
}


def _image(width: int, height: int, mode: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (height, width) if mode == "L" else (height, width, 3)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "pets"
    for c, (name, specs) in enumerate(FOLDER.items()):
        (root / name).mkdir(parents=True)
        for i, (width, height, mode) in enumerate(specs):
            _image(width, height, mode, 10 * c + i).save(root / name / f"{i}.png")
    (root / ".DS_Store").write_bytes(b"hidden files are skipped")
    return root


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = data_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _train_two_tasks(tmp_path, data_path: Path, *extra) -> Path:
    """main_ddpm on a task file or a task folder; a folder trains with replay, so replay's buffer is filled from
    lazily read images."""
    out = tmp_path / "run"
    if data_path.is_dir():
        extra = (*extra, "--buffer_type", "task_balanced", "--buffer_size", "6")
    argv = ["--data_path", data_path, "--output_dir", out, *TINY_FLAGS, "--max_train_steps", "2", *extra]
    assert main_ddpm.main([str(a) for a in argv]) == 0
    return out


# ---------------------------------------------------------------------------------------------------- from-folder
@pytest.mark.parametrize("layout", ["npz", "folder"])
def test_image_folder_converts_loads_and_trains(folder, tmp_path, capsys, layout):
    out = tmp_path / "data"
    code, stdout, _ = _run(
        capsys, "from-folder", folder, "--classes_per_task", 2, "--resolution", 8, "--test_fraction", 0.34,
        "--output_dir", out, "--layout", layout,
    )  # fmt: skip
    assert code == 0, stdout
    suffix = ".npz" if layout == "npz" else ""
    train, test = (load_tasks(out / f"pets_tasks_{split}{suffix}") for split in ("train", "test"))
    assert "class order: task 1: 0 (cat), 1 (dog); task 2: 2 (eel)" in stdout
    for sequence in (train, test):
        assert sequence.task_ids == [1, 2] and sequence.image_size == (8, 8) and sequence.num_channels == 3
        assert [task.classes() for task in sequence] == [[0, 1], [2]]
        assert sequence.class_order == (0, 1, 2) and sequence.class_names == ("cat", "dog", "eel")
    assert [len(t) for t in train] == [4, 2] and [len(t) for t in test] == [2, 1]  # 1 of 3 per class held out
    assert isinstance(train[1].images, LazyImages) == (layout == "folder")
    run = _train_two_tasks(tmp_path, out / f"pets_tasks_train{suffix}")
    assert (run / "task_2").is_dir()
    model = json.loads((run / "config.json").read_text())["model"]  # config.json echoes the task file's class order
    assert model["class_order"] == [0, 1, 2] and model["class_names"] == ["cat", "dog", "eel"]


def test_grayscale_image_is_copied_to_rgb_and_resized_like_the_transform(folder, tmp_path, capsys):
    out = tmp_path / "data"
    assert _run(capsys, "from-folder", folder, "--classes_per_task", 3, "--resolution", 8, "--output_dir", out)[0] == 0
    cat = load_tasks(out / "pets_tasks_train.npz")[1].images[:3]  # cat/0.png, cat/1.png, cat/2.png (grayscale)
    np.testing.assert_array_equal(cat[2, ..., 0], cat[2, ..., 1])
    expected = _image(11, 9, "L", 2).resize((9, 8), Image.BILINEAR).crop((0, 0, 8, 8))  # shorter side 9 → 8
    np.testing.assert_array_equal(cat[2, ..., 0], np.asarray(expected))
    np.testing.assert_array_equal(cat[1], np.asarray(_image(8, 8, "RGB", 1)))  # already 8×8: untouched


def test_all_grayscale_folder_gives_one_channel_and_same_size_needs_no_resolution(tmp_path, capsys):
    root = tmp_path / "gray"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(2):
            _image(6, 5, "L", i).save(root / c / f"{i}.png")
    assert _run(capsys, "from-folder", root, "--classes_per_task", 1, "--output_dir", tmp_path / "o")[0] == 0
    tasks = load_tasks(tmp_path / "o" / "gray_tasks_train.npz")
    assert tasks.num_channels == 1 and tasks.image_size == (5, 6) and len(tasks) == 2


# ---------------------------------------------------------------------------------------------------- class order
@pytest.mark.parametrize(
    "flags, order",
    [
        ([], [0, 1, 2]),
        (["--class_order", "2,0,1"], [2, 0, 1]),
        (["--class_order", "eel,cat,dog"], [2, 0, 1]),  # class names
        (["--class_order", "1,2"], [1, 2]),  # a subset: class 0 is left out
        (["--class_order_seed", "3"], np.random.default_rng(3).permutation(3).tolist()),
    ],
)
def test_class_order_flags_give_the_documented_order(folder, tmp_path, capsys, flags, order):
    out = tmp_path / "data"
    assert _run(capsys, "from-folder", folder, "--classes_per_task", 2, "--output_dir", out, "--resolution", 8,
                *flags)[0] == 0  # fmt: skip
    tasks = load_tasks(out / "pets_tasks_train.npz")
    assert list(tasks.class_order) == order
    assert [task.classes() for task in tasks] == [sorted(order[:2]), sorted(order[2:])][: len(tasks)]
    code, info, _ = _run(capsys, "info", out / "pets_tasks_train.npz")
    assert code == 0 and "class order: " + ", ".join(f"{c} ({['cat', 'dog', 'eel'][c]})" for c in order) in info


def test_digits_and_cifar_take_the_class_order_as_data(tmp_path, capsys):
    train, test = load_split_digits(classes_per_task=3, class_order="9,8,7,6,5,4,3,2,1,0")
    assert [t.classes() for t in train] == [[7, 8, 9], [4, 5, 6], [1, 2, 3], [0]]
    assert train.class_order == tuple(range(9, -1, -1)) and test.class_order == train.class_order
    seeded = load_split_digits(classes_per_task=5, class_order_seed=1)[0]
    expected = np.random.default_rng(1).permutation(10).tolist()
    assert list(seeded.class_order) == expected and seeded[1].classes() == sorted(expected[:5])
    assert load_split_digits()[0].class_order == tuple(range(10))  # the default split, recorded
    code, _, _ = _run(capsys, "digits", "--output_dir", tmp_path, "--classes_per_task", 4, "--class_order_seed", 2)
    assert code == 0 and load_tasks(tmp_path / "digits_tasks_train.npz").class_order == tuple(
        np.random.default_rng(2).permutation(10).tolist()
    )


def test_cifar_script_class_order_flags(tmp_path):
    from test_digits_cifar import fake_batch

    batches = tmp_path / "cifar" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        fake_batch(batches / name, [c for c in range(10) for _ in range(2)], seed=len(name))
    import create_cifar10_data_example as script

    argv = ["--cifar_dir", tmp_path / "cifar", "--output_dir", tmp_path / "o", "--classes_per_task", 4]
    assert script.main([str(a) for a in [*argv, "--class_order", "3,1,4,0,5,9,2,6,8,7"]]) == 0
    tasks = load_tasks(tmp_path / "o" / "cifar10_tasks_train.npz")
    assert tasks.class_order == (3, 1, 4, 0, 5, 9, 2, 6, 8, 7)
    assert [t.classes() for t in tasks] == [[0, 1, 3, 4], [2, 5, 6, 9], [7, 8]]


# --------------------------------------------------------------------------------------------- malformed folders
def _empty_class(root: Path) -> None:
    (root / "fox").mkdir()


def _unreadable(root: Path) -> None:
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")


def _non_image(root: Path) -> None:
    (root / "cat" / "notes.txt").write_text("not an image")


def _truncated(root: Path) -> None:
    data = (root / "eel" / "0.png").read_bytes()
    (root / "eel" / "0.png").write_bytes(data[: len(data) // 2])


def _one_image_class(root: Path) -> None:
    (root / "fox").mkdir()
    _image(8, 8, "RGB", 0).save(root / "fox" / "0.png")


def _stray_image(root: Path) -> None:
    _image(8, 8, "RGB", 0).save(root / "loose.png")


@pytest.mark.parametrize(
    "break_it, expected",
    [
        (_empty_class, "fox: empty class folder"),
        (_unreadable, "broken.png: unreadable image"),
        (_non_image, "notes.txt: not an image file"),
        (_truncated, "eel/0.png: unreadable image"),
        (_one_image_class, "class 'fox' has 1 image; a test split"),
        (_stray_image, "loose.png: an image directly in the root"),
    ],
)
def test_malformed_folders_end_with_one_error_line(folder, tmp_path, capsys, break_it, expected):
    break_it(folder)
    out = tmp_path / "data"
    code, stdout, err = _run(
        capsys, "from-folder", folder, "--classes_per_task", 2, "--resolution", 8, "--test_fraction", 0.3,
        "--output_dir", out, "--layout", "folder",
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert not out.exists() or not any(p.name.startswith("pets") for p in out.iterdir())  # nothing half-written


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--class_order", "cat,wolf"], "unknown class 'wolf'"),
        (["--class_order", "0,0"], "more than once"),
        (["--class_order", "7"], "class 7 has no images"),
        (["--class_order", "0", "--class_order_seed", "1"], "not both"),
        ([], "images differ in size"),  # no --resolution
    ],
)
def test_bad_order_and_size_flags_are_one_line(folder, tmp_path, capsys, argv, expected):
    code, _, err = _run(capsys, "from-folder", folder, "--classes_per_task", 2, "--output_dir", tmp_path, *argv)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and expected in err, err


# ------------------------------------------------------------------------------------------------------- from-hf
def _table(captions: bool = True):
    pa = pytest.importorskip("pyarrow")
    rows = [(w, h, m, c) for c, specs in enumerate(FOLDER.values()) for (w, h, m) in specs]
    images = [{"bytes": _png(_image(w, h, m, i)), "path": None} for i, (w, h, m, _) in enumerate(rows)]
    columns = {
        "image": pa.array(images, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "label": pa.array([c for *_, c in rows], pa.int64()),
    }
    if captions:
        columns["text"] = pa.array([f"a {['cat', 'dog', 'eel'][c]} number {i}" for i, (*_, c) in enumerate(rows)])
    features = {"label": {"names": ["cat", "dog", "eel"], "_type": "ClassLabel"}}
    return pa.table(columns).replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})


def test_parquet_dataset_converts_with_class_labels_and_captions(tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(_table(), tmp_path / "pets.parquet")
    common = ["--classes_per_task", 2, "--resolution", 8, "--output_dir", tmp_path / "o"]
    assert _run(capsys, "from-hf", tmp_path / "pets.parquet", *common, "--class_order", "eel,dog,cat")[0] == 0
    tasks = load_tasks(tmp_path / "o" / "pets_tasks_train.npz")
    assert tasks.class_names == ("cat", "dog", "eel") and tasks.class_order == (2, 1, 0)
    assert [t.classes() for t in tasks] == [[1, 2], [0]] and tasks.num_channels == 3
    code, _, _ = _run(capsys, "from-hf", tmp_path / "pets.parquet", *common, "--caption_column", "text",
                      "--name", "pets_text", "--layout", "folder")  # fmt: skip
    text = load_tasks(tmp_path / "o" / "pets_text_tasks_train")
    assert (
        code == 0 and text.label_kind == "text" and text[2].labels.tolist() == [f"a eel number {i}" for i in (6, 7, 8)]
    )
    np.testing.assert_array_equal(
        np.asarray(text[2].images),
        tasks[1].images[:3],  # eel's rows, first in task 1 of the order eel, dog
    )
    _train_two_tasks(tmp_path, tmp_path / "o" / "pets_tasks_train.npz")


def test_text_tasks_from_hf_train_main_ldm(tmp_path, capsys, tiny_sd_dir):
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(_table(), tmp_path / "pets.parquet")
    argv = ["from-hf", tmp_path / "pets.parquet", "--classes_per_task", 2, "--resolution", 8, "--output_dir",
            tmp_path / "o", "--caption_column", "text"]  # fmt: skip
    assert _run(capsys, *argv)[0] == 0
    import main_ldm

    argv = ["--pretrained_model_name_or_path", tiny_sd_dir, "--data_path", tmp_path / "o" / "pets_tasks_train.npz",
            "--output_dir", tmp_path / "ldm", "--resolution", 8, "--train_batch_size", 2, "--max_train_steps", 1,
            "--logger", "none", "--cache_latents", "--unet_scratch", "--checkpointing_steps", 0,
            "--num_inference_steps", 2, "--num_samples", 1, "--validation_prompts", "a cat number 0"]  # fmt: skip
    assert main_ldm.main([str(a) for a in argv]) == 0
    assert (tmp_path / "ldm" / "task_2").is_dir()


def test_save_to_disk_dataset_and_dataset_dict(tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog", "eel"])}
    )
    rows = [(w, h, m, c) for c, specs in enumerate(FOLDER.values()) for (w, h, m) in specs]
    data = {"image": [_image(w, h, m, i) for i, (w, h, m, _) in enumerate(rows)], "label": [r[3] for r in rows]}
    dataset = datasets.Dataset.from_dict(data, features=features)
    dataset.save_to_disk(str(tmp_path / "single"))
    datasets.DatasetDict({"train": dataset}).save_to_disk(str(tmp_path / "dict"))
    for path in ("single", "dict"):
        argv = ["from-hf", tmp_path / path, "--classes_per_task", 2, "--resolution", 8, "--output_dir", tmp_path / "o"]
        assert _run(capsys, *argv)[0] == 0
        tasks = load_tasks(tmp_path / "o" / f"{path}_tasks_train.npz")
        assert tasks.class_names == ("cat", "dog", "eel") and [len(t) for t in tasks] == [6, 3]
    code, _, err = _run(capsys, "from-hf", tmp_path / "dict", "--split", "test", "--classes_per_task", 2)
    assert code == 2 and "no split 'test' (splits: train)" in err


def test_hf_errors_are_one_line(tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(_table(captions=False), tmp_path / "pets.parquet")
    for argv, expected in [
        (["--label_column", "class"], "no column 'class' (--label_column); columns: image, label"),
        (["--caption_column", "label"], "captions must be strings"),
    ]:
        code, _, err = _run(capsys, "from-hf", tmp_path / "pets.parquet", "--classes_per_task", 2, *argv)
        assert code == 2 and err.startswith("error: ") and expected in err and err.count("\n") == 1, err
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 nope")
    code, _, err = _run(capsys, "from-hf", tmp_path / "junk.parquet", "--classes_per_task", 2)
    assert code == 2 and "not a readable parquet file" in err and err.count("\n") == 1


# ----------------------------------------------------------------------------------------------- lazy task folders
def _digits_both(tmp_path):
    train = load_split_digits()[0]
    save_tasks(tmp_path / "d.npz", train)
    save_tasks(tmp_path / "d", train, layout="folder")
    return load_tasks(tmp_path / "d.npz"), load_tasks(tmp_path / "d")


@pytest.mark.parametrize("resolution, center_crop, flip", [(8, True, False), (6, False, True), (11, True, True)])
def test_lazy_folder_gives_batches_identical_to_the_in_memory_file(tmp_path, resolution, center_crop, flip):
    memory, lazy = _digits_both(tmp_path)
    assert isinstance(lazy[1].images, LazyImages) and not isinstance(memory[1].images, LazyImages)
    transform = ImageTransform(resolution, center_crop=center_crop, random_flip=flip)
    for task_id in lazy.task_ids:
        a, b = TaskDataset(memory[task_id], transform), TaskDataset(lazy[task_id], transform)
        assert isinstance(b.images, PreparedImages) and b.images.shape == a.images.shape and len(a) == len(b)
        order = torch.randperm(len(a), generator=torch.Generator().manual_seed(task_id))
        for indices in (order[:32], order[32:64], torch.tensor([5, 5, 0, len(a) - 1])):
            x, y = (ds.batch(indices, torch.Generator().manual_seed(7)) for ds in (a, b))
            assert torch.equal(x["images"], y["images"]) and torch.equal(x["labels"], y["labels"])
        assert torch.equal(a.images[3:9], b.images[3:9]) and torch.equal(a.images[4], b.images[4])


def test_lazy_folder_works_with_replay_and_conversion(tmp_path):
    memory, lazy = _digits_both(tmp_path)
    transform = ImageTransform(8)
    buffers = []
    for sequence in (memory, lazy):
        buffer = ReplayBuffer(Reservoir(50))
        for task in sequence:
            ds = TaskDataset(task, transform)
            buffer.add_task(task.task_id, ds.images, torch.as_tensor(ds.labels), torch.Generator().manual_seed(0))
        buffers.append(buffer)
    assert torch.equal(buffers[0].images, buffers[1].images) and torch.equal(buffers[0].labels, buffers[1].labels)
    save_tasks(tmp_path / "back.npz", lazy)  # folder → npz, and folder → folder (copied block by block)
    save_tasks(tmp_path / "copy", lazy, layout="folder")
    for path in ("back.npz", "copy"):
        again = load_tasks(tmp_path / path)
        assert again.class_order == memory.class_order
        assert all(np.array_equal(np.asarray(again[t].images), memory[t].images) for t in memory.task_ids)


def test_cached_latents_on_a_lazy_folder(tmp_path, tiny_sd_dir):
    from continual_diffusers.models.latent import LatentCodec, LatentTaskDataset
    from continual_diffusers.pipelines.sd_components import load_sd_components

    save_tasks(tmp_path / "t", make_tasks("text"), layout="folder")
    codec = LatentCodec(load_sd_components(tiny_sd_dir).vae)
    transform = ImageTransform(8, center_crop=True, random_flip=True)
    memory, lazy = (TaskDataset(s[1], transform) for s in (make_tasks("text"), load_tasks(tmp_path / "t")))
    idx = torch.tensor([3, 0, 5, 5])
    batches = [
        LatentTaskDataset(ds, codec, cache=True).batch(idx, torch.Generator().manual_seed(1)) for ds in (memory, lazy)
    ]
    assert torch.equal(batches[0]["images"], batches[1]["images"]) and batches[0]["labels"] == batches[1]["labels"]


def _hostile_folder(tmp_path, edit) -> Path:
    save_tasks(tmp_path / "t", make_tasks(), layout="folder")
    edit(tmp_path / "t")
    return tmp_path / "t"


def _huge_header(folder: Path) -> None:
    path = folder / "task_1" / "images.npy"
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(
            file, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 10**5, 10**5, 3)}
        )


def _object_labels(folder: Path) -> None:
    with open(folder / "task_1" / "labels.npy", "wb") as file:
        np.lib.format.write_array(file, np.array([1, "a"] * 4, dtype=object), allow_pickle=True)


def _short_images(folder: Path) -> None:
    path = folder / "task_2" / "images.npy"
    path.write_bytes(path.read_bytes()[:-5])


@pytest.mark.parametrize(
    "edit, expected",
    [
        (_huge_header, "but the file holds"),
        (_object_labels, "object arrays (which need pickle) are not allowed"),
        (_short_images, "but the file holds"),
        (lambda f: (f / "notes.txt").write_text("x"), "unexpected 'notes.txt'"),
        (lambda f: (f / "task_1" / "extra.npy").write_bytes(b""), "unexpected 'task_1/extra.npy'"),
        (lambda f: (f / "format.npy").unlink(), "nor a task folder (no format.npy)"),
        (lambda f: np.save(f / "task_1" / "images.npy", np.zeros((4, 8, 8, 3), np.float32)), "must be uint8"),
        (lambda f: np.save(f / "class_order.npy", np.array([0, 1])), "class_order [0, 1] lacks classes [2, 3]"),
    ],
)
def test_hostile_task_folders_are_refused_before_allocating(tmp_path, edit, expected):
    path = _hostile_folder(tmp_path, edit)
    with pytest.raises(TaskFileError, match=None) as error:
        load_tasks(path)
    assert expected in str(error.value) and str(error.value).startswith(str(path)), error.value


def test_a_folder_changed_after_loading_is_refused_when_read(tmp_path):
    path = _hostile_folder(tmp_path, lambda f: None)
    tasks = load_tasks(path)
    (path / "task_1" / "images.npy").write_bytes(b"\x93NUMPY")
    with pytest.raises(Exception, match="changed on disk"):
        tasks[1].images[0:2]


# ------------------------------------------------------------------------------------------------------ peak RSS
_RSS_SCRIPT = textwrap.dedent(
    """
    import resource, sys, torch
    from continual_diffusers.data import ImageTransform, TaskDataset, load_tasks
    tasks = load_tasks(sys.argv[1])
    for task in tasks:
        ds = TaskDataset(task, ImageTransform(32))
        for start in range(0, len(ds), 64):
            ds.batch(torch.arange(start, min(start + 64, len(ds))))
    # VmHWM: this process's own peak (ru_maxrss would also count the parent's RSS at fork, kept across exec)
    status = open("/proc/self/status").read().split("VmHWM:")
    print(int(status[1].split()[0]) if len(status) > 1 else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


def _peak_rss_kib(path: Path) -> int:
    env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(path)], capture_output=True, text=True, env=env, cwd=ROOT, check=True
    )
    return int(result.stdout.split()[-1])


def test_peak_rss_of_a_lazy_folder_does_not_grow_with_the_number_of_images(tmp_path):
    from continual_diffusers.data import Task, TaskSequence

    peaks = {}
    for num in (200, 6000):  # 64×64×3: 2.4 MB vs 74 MB of images
        images = np.random.default_rng(0).integers(0, 256, (num, 64, 64, 3), dtype=np.uint8)
        save_tasks(tmp_path / f"t{num}", TaskSequence((Task(1, images, np.zeros(num, np.int64)),)), layout="folder")
        del images
        peaks[num] = _peak_rss_kib(tmp_path / f"t{num}")
    assert peaks[6000] - peaks[200] < 20 * 1024, peaks  # in memory, the larger task alone would add > 100 MB
