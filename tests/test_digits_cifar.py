"""Bundled digits split, the CIFAR-10 batch reader and `create_cifar10_data_example.py` on a fake CIFAR folder."""

from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from continual_diffusers.data import load_split_digits, load_tasks, write_split_digits
from continual_diffusers.data.__main__ import main as data_main
from continual_diffusers.data.cifar10 import find_batches_dir, read_batch
from continual_diffusers.data.digits import _load_digits
from continual_diffusers.utils.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def digits():
    return load_split_digits()


def rows(images: np.ndarray) -> list[bytes]:
    return sorted(image.tobytes() for image in images)


def test_digits_split_has_five_two_class_grayscale_tasks(digits):
    train, test = digits
    for sequence in (train, test):
        assert sequence.task_ids == [1, 2, 3, 4, 5]
        assert (sequence.num_channels, sequence.image_size, sequence.num_classes) == (1, (8, 8), 10)
        for task in sequence:
            assert task.images.dtype == np.uint8 and task.images.shape[1:] == (8, 8, 1)
            assert task.classes() == [2 * task.task_id - 2, 2 * task.task_id - 1]
    assert train[1].images.max() == 255 and train[1].images.min() == 0


def test_digits_test_split_is_a_stratified_partition(digits):
    train, test = digits
    images, labels = _load_digits()
    for label in range(10):
        task_id = label // 2 + 1
        train_images = train[task_id].images[train[task_id].labels == label]
        test_images = test[task_id].images[test[task_id].labels == label]
        total = int((labels == label).sum())
        assert abs(len(test_images) - 0.2 * total) <= 1  # stratified: 20 % of every class
        # Train and test together are exactly this class's images, each once: a disjoint split.
        assert rows(np.concatenate([train_images, test_images])) == rows(images[labels == label])


def test_digits_split_is_deterministic_and_validated(digits):
    again = load_split_digits(seed=0)
    np.testing.assert_array_equal(again[1][3].images, digits[1][3].images)
    assert not np.array_equal(load_split_digits(seed=1)[1][3].images, digits[1][3].images)
    two = load_split_digits(num_tasks=2)[0]
    assert [task.classes() for task in two] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    with pytest.raises(UserInputError, match="must divide"):
        load_split_digits(num_tasks=3)
    with pytest.raises(UserInputError, match="test_fraction"):
        load_split_digits(test_fraction=1.0)


def test_digits_cli_writes_loadable_files(tmp_path, capsys):
    assert data_main(["digits", "--output_dir", str(tmp_path / "out"), "--num_tasks", "5"]) == 0
    train = load_tasks(tmp_path / "out" / "digits_tasks_train.npz")
    assert train.task_ids == [1, 2, 3, 4, 5]
    assert data_main(["info", str(tmp_path / "out" / "digits_tasks_test.npz")]) == 0
    out = capsys.readouterr().out
    assert "5 task(s), images 8x8x1 uint8, labels: class (10 classes)" in out and "classes [8, 9]" in out
    assert write_split_digits(tmp_path, num_tasks=10)[0] == tmp_path / "digits_tasks_train.npz"


# ---------------------------------------------------------------------------------------------------------------------
# CIFAR-10 on a tiny fake "python batches" folder (same keys and layout as the real one; plain pickle is fine here)


def fake_batch(path: Path, labels: list[int], seed: int) -> np.ndarray:
    data = np.random.default_rng(seed).integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    path.write_bytes(pickle.dumps({b"batch_label": b"fake", b"labels": labels, b"data": data}, protocol=2))
    return data


@pytest.fixture
def fake_cifar(tmp_path) -> Path:
    batches = tmp_path / "cifar" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    labels = [c for c in range(10) for _ in range(2)]  # 2 images per class in every batch
    for i in range(1, 6):
        fake_batch(batches / f"data_batch_{i}", labels, seed=i)
    fake_batch(batches / "test_batch", labels[::2], seed=0)  # 1 image per class
    meta = {b"label_names": [name.encode() for name in CLASS_NAMES], b"num_cases_per_batch": 20}
    (batches / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return tmp_path / "cifar"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location(
        "create_cifar10_data_example", ROOT / "create_cifar10_data_example.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_read_batch_converts_rows_to_hwc(tmp_path):
    data = fake_batch(tmp_path / "batch", [3, 1], seed=7)
    images, labels = read_batch(tmp_path / "batch")
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8 and labels.tolist() == [3, 1]
    np.testing.assert_array_equal(images[1, 5, 7], data[1].reshape(3, 32, 32)[:, 5, 7])  # pixel (5, 7), R G B


def test_cifar_script_writes_class_and_caption_tasks(script, fake_cifar, tmp_path):
    out = tmp_path / "data"
    assert script.main(["--cifar_dir", str(fake_cifar), "--output_dir", str(out), "--captions"]) == 0
    written = sorted(os.listdir(out))
    assert written == [f"cifar10_{kind}tasks_{split}.npz" for kind in ("captions_", "") for split in ("test", "train")]
    train = load_tasks(out / "cifar10_tasks_train.npz")
    assert train.task_ids == [1, 2, 3, 4, 5] and train.image_size == (32, 32) and train.num_channels == 3
    assert [task.classes() for task in train] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert len(train[1]) == 20 and len(load_tasks(out / "cifar10_tasks_test.npz")[1]) == 2
    captions = load_tasks(out / "cifar10_captions_tasks_train.npz")
    assert captions.label_kind == "text" and set(captions[2].labels) == {"a photo of a bird", "a photo of a cat"}
    np.testing.assert_array_equal(captions[2].images, train[2].images)
    expected = read_batch(fake_cifar / "cifar-10-batches-py" / "data_batch_1")[0][:2]  # class 0, batch 1
    np.testing.assert_array_equal(train[1].images[:2], expected)


def test_cifar_script_accepts_the_batches_folder_itself(script, fake_cifar, tmp_path):
    batches = fake_cifar / "cifar-10-batches-py"
    assert find_batches_dir(batches) == batches == find_batches_dir(fake_cifar)
    assert script.main(["--cifar_dir", str(batches), "--output_dir", str(tmp_path / "d"), "--num_tasks", "2"]) == 0
    assert len(load_tasks(tmp_path / "d" / "cifar10_tasks_train.npz")) == 2


@pytest.mark.parametrize("problem", ["missing_folder", "bad_num_tasks", "unsafe_batch"])
def test_cifar_script_errors_are_one_line(script, fake_cifar, tmp_path, capsys, problem):
    args = ["--cifar_dir", str(fake_cifar), "--output_dir", str(tmp_path / "out")]
    if problem == "missing_folder":
        args[1] = str(tmp_path / "nowhere")
    elif problem == "bad_num_tasks":
        args += ["--num_tasks", "3"]
    else:
        (fake_cifar / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps(os.system, protocol=2))
    assert script.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    if problem == "unsafe_batch":
        assert "refusing to unpickle 'posix.system'" in err


def test_cifar_script_help(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0 and "--download" in capsys.readouterr().out


def test_download_offline_is_a_clear_error(script, tmp_path, capsys, monkeypatch):
    import urllib.error

    from continual_diffusers.data import cifar10

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(cifar10.urllib.request, "urlopen", offline)
    assert script.main(["--cifar_dir", str(tmp_path / "cifar"), "--download"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not download https://www.cs.toronto.edu/") and err.count("\n") == 1
