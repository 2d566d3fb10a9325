"""Hostile and broken inputs for the data-ingestion commands: image folders (`from-folder`), parquet files, Arrow IPC
streams and `save_to_disk` folders (`from-hf`), and task folders (`convert`, `info`, `main_ddpm.py --data_path`).

Each builder writes what it needs into a fresh folder and returns the argument list of one run (without
`--output_dir`; a list starting with "main_ddpm" runs main_ddpm.py with the rest) and a fragment of the one `error:`
line the run must end with. `CASES` lists them as (name, builder, holds a FIFO): a case whose input is or holds a
FIFO would block forever on a reader that opens it blindly, so the test runs those in a process of their own with a
timeout.

Image payloads are made by hand where a real encoder would need the memory they describe: a PNG of 13000x13000
zero pixels is an IHDR and a zlib stream of zero rows (≈ 660 KB), a JPEG or GIF of 30000x30000 is a small image
whose header is rewritten.
"""

from __future__ import annotations

import functools
import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np

DATA_CLI = "continual_diffusers.data.__main__"
BUILD = ["--classes_per_task", "1"]

# ---------------------------------------------------------------------------------------------------------------------
# Images


def png_bytes(width: int = 8, height: int = 8, mode: str = "RGB", seed: int = 0) -> bytes:
    """A real PNG of random pixels, written by PIL."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (height, width) if mode == "L" else (height, width, len(mode))
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.lru_cache(maxsize=4)
def png_of_zeros(width: int, height: int, color_type: int = 6) -> bytes:
    """A valid PNG of `width` x `height` zero pixels (8-bit; colour type 6 = RGBA, 2 = RGB), its IDAT compressed
    row by row: a few hundred KB that decode to width * height * channels bytes."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    compressor, row = zlib.compressobj(9), bytes(1 + width * channels)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">2I5B", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_text_bomb() -> bytes:
    """A small PNG with a zTXt chunk that inflates to 256 MiB of text (PIL refuses past MAX_TEXT_CHUNK)."""
    real = png_bytes()
    compressor = zlib.compressobj(9)
    chunk = bytes(2**20)
    text = b"".join(compressor.compress(chunk) for _ in range(256)) + compressor.flush()
    ztxt = _png_chunk(b"zTXt", b"Comment\x00\x00" + text)
    return real[:33] + ztxt + real[33:]  # after the 8-byte signature and the 25-byte IHDR chunk


def jpeg_claiming(width: int, height: int) -> bytes:
    """An 8x8 JPEG whose SOF0 header states `width` x `height`."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    at = data.find(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">2H", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    """An 8x8 GIF whose logical screen is `width` x `height` (PIL takes the image size from it)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("P", (8, 8)).save(buffer, format="GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<2H", width, height)
    return bytes(data)


def eps_bytes(marker: Path) -> bytes:
    """Encapsulated PostScript (PIL would hand it to Ghostscript on load) that tries to create `marker`."""
    return (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"
        + f"(%pipe%touch {marker}) (w) file closefile\n".encode()
        + b"newpath 0 0 moveto 8 8 lineto stroke showpage\n%%EOF\n"
    )


# ---------------------------------------------------------------------------------------------------------------------
# Image folders


def image_folder(root: Path, classes: dict[str, int] | None = None, size: int = 8) -> Path:
    """root/<class>/<i>.png with real 8x8 PNGs (default: classes a and b, 2 images each)."""
    for c, (name, count) in enumerate((classes or {"a": 2, "b": 2}).items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            (root / name / f"{i}.png").write_bytes(png_bytes(size, size, seed=10 * c + i))
    return root


def _folder_argv(root: Path, *extra) -> list:
    return ["from-folder", root, *BUILD, *extra]


def folder_fifo_image(folder: Path):
    root = image_folder(folder / "root")
    os.mkfifo(root / "a" / "f.png")
    return _folder_argv(root), "a/f.png: a FIFO, not a regular file"


def folder_fifo_root(folder: Path):
    os.mkfifo(folder / "root")
    return _folder_argv(folder / "root"), "a FIFO, not a folder"


def folder_png_13000_rgba(folder: Path):
    """The 13000x13000 RGBA PNG of ≈ 660 KB just under PIL's limit (1.5 GB of pixels once decoded and converted)."""
    root = image_folder(folder / "root")
    (root / "a" / "bomb.png").write_bytes(png_of_zeros(13000, 13000))
    return _folder_argv(root, "--resolution", "8"), "a/bomb.png: 13000x13000 = 169000000 pixels, more than the limit"


def folder_three_8000_pngs(folder: Path):
    """Three 8000x8000 RGB PNGs, each under PIL's warning threshold: a 576 MB array between them."""
    root = image_folder(folder / "root")
    zeros = png_of_zeros(8000, 8000, color_type=2)
    for i in range(3):
        (root / "b" / f"big{i}.png").write_bytes(zeros)
    return _folder_argv(root, "--resolution", "8"), "b/big0.png: 8000x8000 = 64000000 pixels, more than the limit"


def folder_jpeg_30000(folder: Path):
    root = image_folder(folder / "root")
    (root / "a" / "huge.jpg").write_bytes(jpeg_claiming(30000, 30000))
    return _folder_argv(root, "--resolution", "8"), "a/huge.jpg: "


def folder_gif_65535(folder: Path):
    root = image_folder(folder / "root")
    (root / "b" / "screen.gif").write_bytes(gif_claiming(65535, 65535))
    return _folder_argv(root, "--resolution", "8"), "b/screen.gif: "


def folder_png_text_bomb(folder: Path):
    root = image_folder(folder / "root")
    (root / "a" / "text.png").write_bytes(png_text_bomb())
    return _folder_argv(root), "a/text.png: unreadable image"


def folder_eps_named_png(folder: Path):
    """PostScript under a .png name: decoded by content, PIL would run Ghostscript on it."""
    root = image_folder(folder / "root")
    (root / "a" / "script.png").write_bytes(eps_bytes(folder / "pwned"))
    return _folder_argv(root), "a/script.png: unreadable image"


def folder_empty_png(folder: Path):
    root = image_folder(folder / "root")
    (root / "b" / "empty.png").write_bytes(b"")
    return _folder_argv(root), "b/empty.png: unreadable image"


def _truncated_in_test_split(folder: Path, layout: str):
    """Class b's image that the split (seed 0, --test_fraction 0.5) puts in the test file is cut in half: the train
    file would be written before the test images are decoded."""
    from continual_diffusers.data.builder import Source, split_train_test

    root = image_folder(folder / "root", {"a": 2, "b": 2})
    source = Source("x", np.array([0, 0, 1, 1]), ["a", "b"], lambda i: None, str)
    _, test = split_train_test(source, [0, 1], 0.5, 0)
    victim = root / "b" / f"{int(test[1][0]) - 2}.png"
    victim.write_bytes(victim.read_bytes()[:60])
    name = f"b/{victim.name}: unreadable image"
    return _folder_argv(root, "--test_fraction", "0.5", "--seed", "0", "--layout", layout), name


def folder_truncated_in_test_split_npz(folder: Path):
    return _truncated_in_test_split(folder, "npz")


def folder_truncated_in_test_split_folder(folder: Path):
    return _truncated_in_test_split(folder, "folder")


def folder_non_utf8_class(folder: Path):
    root = image_folder(folder / "root")
    bad = os.fsencode(root) + b"/caf\xe9"
    os.mkdir(bad)
    with open(bad + b"/0.png", "wb") as file:
        file.write(png_bytes())
    return _folder_argv(root), "not valid UTF-8"


def folder_ansi_file_name(folder: Path):
    """A file name that clears the screen and retitles the terminal if printed raw."""
    root = image_folder(folder / "root")
    (root / "a" / "\x1b[2J\x1b]0;owned\x07notes.txt").write_text("x")
    return _folder_argv(root), "a/\\x1b[2J\\x1b]0;owned\\x07notes.txt: not an image file"


def folder_newline_file_name(folder: Path):
    """A file name that would print a second, forged `error:` line."""
    root = image_folder(folder / "root")
    (root / "a" / "x\nerror: all good.txt").write_text("x")
    return _folder_argv(root), "a/x\\nerror: all good.txt: not an image file"


def folder_deep_nesting(folder: Path):
    """1,100 nested folders (os.walk recursed once per level: RecursionError)."""
    root = image_folder(folder / "root")
    deep = os.path.join(root, "a")
    for _ in range(1100):  # os.makedirs recurses once per level too
        deep = os.path.join(deep, "d")
        os.mkdir(deep)
    with open(os.path.join(deep, "0.png"), "wb") as file:
        file.write(png_bytes())
    return _folder_argv(root), "folders deep"


def remove_deep_nesting(folder: Path) -> None:
    """Remove what `folder_deep_nesting` made under `folder` (shutil.rmtree, and so pytest's clean-up of old temporary
    folders, recurses once per level as well)."""
    top = folder / "root" / "a" / "d"
    if not top.is_dir():
        return
    deepest = str(top)
    while os.path.isdir(os.path.join(deepest, "d")):
        deepest = os.path.join(deepest, "d")
    while True:
        for name in os.listdir(deepest):
            os.unlink(os.path.join(deepest, name))
        os.rmdir(deepest)
        if deepest == str(top):
            return
        deepest = os.path.dirname(deepest)


def _outside_png(folder: Path) -> Path:
    (folder / "elsewhere").mkdir()
    (folder / "elsewhere" / "0.png").write_bytes(png_bytes(seed=9))
    return folder / "elsewhere"


def folder_symlink_image_outside(folder: Path):
    root = image_folder(folder / "root")
    os.symlink(_outside_png(folder) / "0.png", root / "a" / "link.png")
    return _folder_argv(root), "a/link.png: resolves outside"


def folder_symlink_class_outside(folder: Path):
    root = image_folder(folder / "root")
    os.symlink(_outside_png(folder), root / "c")
    return _folder_argv(root), "c: resolves outside"


def folder_symlink_subfolder_outside(folder: Path):
    root = image_folder(folder / "root")
    os.symlink(_outside_png(folder), root / "b" / "more")
    return _folder_argv(root), "b/more: resolves outside"


def folder_symlink_to_dev_zero(folder: Path):
    root = image_folder(folder / "root")
    os.symlink("/dev/zero", root / "a" / "zero.png")
    return _folder_argv(root), "a/zero.png: resolves outside"


def folder_symlink_loop(folder: Path):
    root = image_folder(folder / "root")
    os.symlink("..", root / "a" / "again")
    return _folder_argv(root), "a/again: reaches"


# ---------------------------------------------------------------------------------------------------------------------
# Hugging Face data: Arrow IPC streams, parquet files, save_to_disk folders


def _image_struct(pa, values: list, paths: list | None = None):
    paths = paths if paths is not None else [None] * len(values)
    return pa.StructArray.from_arrays([pa.array(values, pa.binary()), pa.array(paths, pa.string())], ["bytes", "path"])


def hf_table(pa, rows: int = 4, labels=None, images=None, **columns):
    """image (datasets.Image structs of real PNGs) and label columns, plus any given."""
    images = images if images is not None else _image_struct(pa, [png_bytes(seed=i) for i in range(rows)])
    labels = labels if labels is not None else pa.array([i % 2 for i in range(rows)], pa.int64())
    return pa.table({"image": images, "label": labels, **columns})


def arrow_stream_bytes(table, compression: str | None = None) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _patch(data: bytes, old: bytes, new: bytes) -> bytes:
    at = data.find(old)
    assert at >= 0 and len(old) == len(new), "the pattern to patch is not in the file"
    return data[:at] + new + data[at + len(old) :]


def _hf_argv(path: Path, *extra) -> list:
    return ["from-hf", path, *BUILD, *extra]


def hf_arrow_offsets_past_buffer(folder: Path):
    """A binary image column whose last offset points 1 GiB past its data buffer (SIGSEGV/SIGBUS on access)."""
    import pyarrow as pa

    table = pa.table({"image": pa.array([b"hello", b"world"], pa.binary()), "label": pa.array([0, 1])})
    data = _patch(arrow_stream_bytes(table), struct.pack("<3i", 0, 5, 10), struct.pack("<3i", 0, 5, 1 << 30))
    (folder / "bad.arrow").write_bytes(data)
    return _hf_argv(folder / "bad.arrow"), "invalid Arrow data"


def hf_arrow_string_label_offsets(folder: Path):
    """String labels whose offsets run backwards and past the buffer."""
    import pyarrow as pa

    table = hf_table(pa, 2, labels=pa.array(["cat", "dog"]))
    data = _patch(arrow_stream_bytes(table), struct.pack("<3i", 0, 3, 6), struct.pack("<3i", 0, 1 << 28, 2))
    (folder / "labels.arrow").write_bytes(data)
    return _hf_argv(folder / "labels.arrow"), "invalid Arrow data"


def hf_arrow_invalid_utf8_label(folder: Path):
    import pyarrow as pa

    table = hf_table(pa, 2, labels=pa.array(["cat", "dog"]))
    (folder / "utf8.arrow").write_bytes(_patch(arrow_stream_bytes(table), b"catdog", b"ca\xffdog"))
    return _hf_argv(folder / "utf8.arrow"), "invalid Arrow data"


def hf_arrow_dictionary_index_out_of_range(folder: Path):
    """Dictionary-encoded labels whose last index is patched to 1,000,000 (the dictionary has 2 entries)."""
    import pyarrow as pa

    labels = pa.DictionaryArray.from_arrays(pa.array([1, 0, 1, 1], pa.int32()), pa.array(["cat", "dog"]))
    table = hf_table(pa, 4, labels=labels)
    data = _patch(arrow_stream_bytes(table), struct.pack("<4i", 1, 0, 1, 1), struct.pack("<4i", 1, 0, 1, 10**6))
    (folder / "dict.arrow").write_bytes(data)
    return _hf_argv(folder / "dict.arrow"), "invalid Arrow data"


def hf_arrow_file_format(folder: Path):
    """The random-access IPC file format with offsets past the buffer: its footer may point anywhere."""
    import pyarrow as pa

    table = pa.table({"image": pa.array([b"hello", b"world"], pa.binary()), "label": pa.array([0, 1])})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    data = _patch(sink.getvalue().to_pybytes(), struct.pack("<3i", 0, 5, 10), struct.pack("<3i", 0, 5, 1 << 30))
    (folder / "file.arrow").write_bytes(data)
    return _hf_argv(folder / "file.arrow"), "an Arrow IPC file (random-access format)"


def hf_arrow_compressed(folder: Path):
    """A zstd-compressed stream whose label buffer states 2^40 bytes once decompressed."""
    import pyarrow as pa

    table = hf_table(pa, 2)
    data = arrow_stream_bytes(table, compression="zstd")
    data = _patch(data, struct.pack("<q", 16) + b"\x28\xb5\x2f\xfd", struct.pack("<q", 2**40) + b"\x28\xb5\x2f\xfd")
    (folder / "zstd.arrow").write_bytes(data)
    return _hf_argv(folder / "zstd.arrow"), "compressed"


def hf_arrow_null_rows(folder: Path):
    """10^12 rows of null-typed columns: no buffers at all, so the file is a few hundred bytes (written for 12,345
    rows, then the stated lengths patched: pa.nulls(10**12) itself would allocate)."""
    import pyarrow as pa

    batch = pa.record_batch([pa.nulls(12345), pa.nulls(12345)], names=["image", "label"])
    data = arrow_stream_bytes(pa.Table.from_batches([batch]))
    (folder / "nulls.arrow").write_bytes(data.replace(struct.pack("<q", 12345), struct.pack("<q", 10**12)))
    return _hf_argv(folder / "nulls.arrow"), "1000000000000 rows"


def hf_parquet_dictionary_bomb(folder: Path):
    """9,000 rows that all point at one 100 KB dictionary value: 100 KB on disk, 0.9 GB decoded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    value = np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    images = pa.DictionaryArray.from_arrays(pa.array(np.zeros(9000, np.int32)), pa.array([value], pa.binary()))
    table = pa.table({"image": images, "label": pa.array(np.zeros(9000, np.int64))})
    pq.write_table(table, folder / "dict.parquet", compression="zstd", store_schema=False)  # read back dense
    return _hf_argv(folder / "dict.parquet"), "row 0: unreadable image"


def hf_parquet_caption_dictionary_bomb(folder: Path):
    """Every row's caption is the same 100,000-character string, stored once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    captions = pa.DictionaryArray.from_arrays(pa.array(np.zeros(9000, np.int32)), pa.array(["x" * 100_000]))
    images = pa.DictionaryArray.from_arrays(pa.array(np.zeros(9000, np.int32)), pa.array([png_bytes()], pa.binary()))
    table = pa.table({"image": images, "label": pa.array(np.zeros(9000, np.int64)), "text": captions})
    pq.write_table(table, folder / "captions.parquet", compression="zstd", store_schema=False)
    return _hf_argv(folder / "captions.parquet", "--caption_column", "text"), "100000 characters"


def hf_parquet_label_1e9(folder: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(hf_table(pa, 2, labels=pa.array([0, 10**9], pa.int64())), folder / "label.parquet")
    return _hf_argv(folder / "label.parquet"), "class ids must be at most 999999"


def hf_parquet_label_uint64(folder: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(hf_table(pa, 2, labels=pa.array([0, 2**64 - 1], pa.uint64())), folder / "u64.parquet")
    return _hf_argv(folder / "u64.parquet"), "class ids must be at most 999999"


def hf_parquet_caption_500k(folder: Path):
    """One 500,000-character caption among short ones (numpy pads every caption to the longest)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    captions = pa.array(["a cat"] * 999 + ["y" * 500_000])
    table = hf_table(pa, 1000, images=_image_struct(pa, [png_bytes()] * 1000), text=captions)
    pq.write_table(table, folder / "long.parquet")
    return _hf_argv(folder / "long.parquet", "--caption_column", "text"), "500000 characters"


def hf_parquet_long_class_name(folder: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(hf_table(pa, 2, labels=pa.array(["cat", "z" * 100_000])), folder / "name.parquet")
    return _hf_argv(folder / "name.parquet"), "100000 characters"


def hf_parquet_nested_metadata(folder: Path):
    """The schema's `huggingface` metadata nested 100,000 lists deep (json.loads: RecursionError)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    deep = "[" * 100_000 + "]" * 100_000
    table = hf_table(pa, 2).replace_schema_metadata({"huggingface": deep})
    pq.write_table(table, folder / "meta.parquet")
    return _hf_argv(folder / "meta.parquet"), "huggingface"


def hf_parquet_too_many_rows(folder: Path):
    """2,000,001 rows, one small image and one label repeated (dictionary and run-length encoded: ≈ 50 KB)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 2_000_001
    images = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), pa.array([png_bytes()], pa.binary()))
    table = pa.table({"image": images, "label": pa.array(np.zeros(rows, np.int64))})
    pq.write_table(table, folder / "rows.parquet", compression="zstd", store_schema=False)
    return _hf_argv(folder / "rows.parquet"), "2000001 rows"


def hf_parquet_truncated(folder: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(hf_table(pa, 4), folder / "whole.parquet")
    data = (folder / "whole.parquet").read_bytes()
    (folder / "cut.parquet").write_bytes(data[: len(data) // 2] + data[-8:])  # the footer's length and magic kept
    return _hf_argv(folder / "cut.parquet"), "not a readable parquet file"


def hf_parquet_list_column(folder: Path):
    """Labels as lists: a column type from-hf does not take, refused from the schema before any data is read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(hf_table(pa, 2, labels=pa.array([[0] * 3, [1]])), folder / "lists.parquet")
    return _hf_argv(folder / "lists.parquet"), "labels must be integer class ids or strings"


def _save_to_disk(folder: Path, table, info: str | None = None) -> Path:
    """A `Dataset.save_to_disk` folder: state.json, dataset_info.json and one .arrow stream."""
    dataset = folder / "ds"
    dataset.mkdir()
    (dataset / "data-00000-of-00001.arrow").write_bytes(arrow_stream_bytes(table))
    (dataset / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (dataset / "dataset_info.json").write_text(info if info is not None else json.dumps({"features": {}}))
    return dataset


def hf_state_json_lists_fifo(folder: Path):
    import pyarrow as pa

    dataset = _save_to_disk(folder, hf_table(pa, 2))
    os.mkfifo(dataset / "data-fifo.arrow")
    (dataset / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-fifo.arrow"}]}))
    return _hf_argv(dataset), "data-fifo.arrow: a FIFO, not a regular file"


def hf_state_json_is_fifo(folder: Path):
    import pyarrow as pa

    dataset = _save_to_disk(folder, hf_table(pa, 2))
    (dataset / "state.json").unlink()
    os.mkfifo(dataset / "state.json")
    return _hf_argv(dataset), "state.json: a FIFO, not a regular file"


def hf_dataset_info_nested(folder: Path):
    import pyarrow as pa

    dataset = _save_to_disk(folder, hf_table(pa, 2), info='{"features": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return _hf_argv(dataset), "dataset_info.json"


def hf_dataset_dict_nested(folder: Path):
    import pyarrow as pa

    dataset = _save_to_disk(folder, hf_table(pa, 2))
    (folder / "dict").mkdir()
    os.rename(dataset, folder / "dict" / "train")
    (folder / "dict" / "dataset_dict.json").write_text('{"splits": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return _hf_argv(folder / "dict"), "dataset_dict.json"


def hf_class_names_too_many(folder: Path):
    """A ClassLabel with 1,000,001 names (class ids go up to 999,999)."""
    import pyarrow as pa

    names = [f"c{i}" for i in range(1_000_001)]
    info = json.dumps({"features": {"label": {"_type": "ClassLabel", "names": names}}})
    return _hf_argv(_save_to_disk(folder, hf_table(pa, 2), info)), "1000001 class names"


def hf_path_is_fifo(folder: Path):
    os.mkfifo(folder / "data")
    return _hf_argv(folder / "data"), "a FIFO, not a regular file or folder"


def hf_parquet_in_folder_is_fifo(folder: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "data").mkdir()
    pq.write_table(hf_table(pa, 2), folder / "data" / "a.parquet")
    os.mkfifo(folder / "data" / "b.parquet")
    return _hf_argv(folder / "data"), "b.parquet: a FIFO, not a regular file"


def _with_image_path(folder: Path, path: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "data").mkdir(exist_ok=True)
    images = _image_struct(pa, [png_bytes(), None], [None, path])
    pq.write_table(hf_table(pa, 2, images=images), folder / "data" / "paths.parquet")
    return folder / "data" / "paths.parquet"


def hf_image_path_absolute(folder: Path):
    (folder / "secret.png").write_bytes(png_bytes(seed=3))
    return _hf_argv(_with_image_path(folder, str(folder / "secret.png"))), "row 1: image path"


def hf_image_path_traversal(folder: Path):
    (folder / "secret.png").write_bytes(png_bytes(seed=3))
    return _hf_argv(_with_image_path(folder, "../secret.png")), "row 1: image path"


def hf_image_path_fifo(folder: Path):
    path = _with_image_path(folder, "pipe.png")
    os.mkfifo(folder / "data" / "pipe.png")
    return _hf_argv(path), "row 1 (pipe.png): a FIFO, not a regular file"


def hf_image_bytes_pixel_bomb(folder: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = _image_struct(pa, [png_bytes(), png_of_zeros(13000, 13000)])
    pq.write_table(hf_table(pa, 2, images=images), folder / "bomb.parquet")
    expected = "row 1: 13000x13000 = 169000000 pixels, more than the limit"
    return _hf_argv(folder / "bomb.parquet", "--resolution", "8"), expected


def hf_image_bytes_eps(folder: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = _image_struct(pa, [png_bytes(), eps_bytes(folder / "pwned")])
    pq.write_table(hf_table(pa, 2, images=images), folder / "eps.parquet")
    return _hf_argv(folder / "eps.parquet"), "row 1: unreadable image"


# ---------------------------------------------------------------------------------------------------------------------
# Task folders


def _task_folder(folder: Path) -> Path:
    import conftest

    from continual_diffusers.data import save_tasks

    save_tasks(folder / "tasks", conftest.make_tasks(), layout="folder")
    return folder / "tasks"


def task_folder_sparse_5gib_to_npz(folder: Path):
    """A task folder whose images.npy is a 5 GiB sparse file: `convert` to one .npz read it whole."""
    tasks = _task_folder(folder)
    path = tasks / "task_1" / "images.npy"
    count = 5 * 2**30 // 192
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (count, 8, 8, 3)})
    with open(path, "wb") as file:
        file.write(header.getvalue())
        file.truncate(len(header.getvalue()) + count * 192)
    (tasks / "task_1" / "labels.npy").unlink()  # unlabelled: 5 GiB / 192 labels would be a big file of their own
    (tasks / "task_2" / "labels.npy").unlink()
    return ["convert", tasks, folder / "out.npz"], "more than one .npz task file may hold"


def task_folder_images_fifo(folder: Path):
    tasks = _task_folder(folder)
    (tasks / "task_2" / "images.npy").unlink()
    os.mkfifo(tasks / "task_2" / "images.npy")
    return ["info", tasks], "'task_2/images.npy' is not a regular file"


def task_folder_labels_fifo_main_ddpm(folder: Path):
    """main_ddpm.py --data_path on a task folder whose labels are a FIFO."""
    tasks = _task_folder(folder)
    (tasks / "task_1" / "labels.npy").unlink()
    os.mkfifo(tasks / "task_1" / "labels.npy")
    return ["main_ddpm", "--data_path", tasks], "'task_1/labels.npy' is not a regular file"


def task_folder_images_dev_zero_main_ddpm(folder: Path):
    """main_ddpm.py --data_path on a task folder whose images are a symlink to /dev/zero."""
    tasks = _task_folder(folder)
    (tasks / "task_2" / "images.npy").unlink()
    os.symlink("/dev/zero", tasks / "task_2" / "images.npy")
    return ["main_ddpm", "--data_path", tasks], "'task_2/images.npy' is not a regular file"


def task_file_fifo_convert(folder: Path):
    os.mkfifo(folder / "tasks.npz")
    return ["convert", folder / "tasks.npz", folder / "out.npz"], "not a regular file"


# (name, builder, holds a FIFO)
CASES = [
    ("folder_fifo_image", folder_fifo_image, True),
    ("folder_fifo_root", folder_fifo_root, True),
    ("folder_png_13000_rgba", folder_png_13000_rgba, False),
    ("folder_three_8000_pngs", folder_three_8000_pngs, False),
    ("folder_jpeg_30000", folder_jpeg_30000, False),
    ("folder_gif_65535", folder_gif_65535, False),
    ("folder_png_text_bomb", folder_png_text_bomb, False),
    ("folder_eps_named_png", folder_eps_named_png, False),
    ("folder_empty_png", folder_empty_png, False),
    ("folder_truncated_in_test_split_npz", folder_truncated_in_test_split_npz, False),
    ("folder_truncated_in_test_split_folder", folder_truncated_in_test_split_folder, False),
    ("folder_non_utf8_class", folder_non_utf8_class, False),
    ("folder_ansi_file_name", folder_ansi_file_name, False),
    ("folder_newline_file_name", folder_newline_file_name, False),
    ("folder_deep_nesting", folder_deep_nesting, False),
    ("folder_symlink_image_outside", folder_symlink_image_outside, False),
    ("folder_symlink_class_outside", folder_symlink_class_outside, False),
    ("folder_symlink_subfolder_outside", folder_symlink_subfolder_outside, False),
    ("folder_symlink_to_dev_zero", folder_symlink_to_dev_zero, True),
    ("folder_symlink_loop", folder_symlink_loop, False),
    ("hf_arrow_offsets_past_buffer", hf_arrow_offsets_past_buffer, False),
    ("hf_arrow_string_label_offsets", hf_arrow_string_label_offsets, False),
    ("hf_arrow_invalid_utf8_label", hf_arrow_invalid_utf8_label, False),
    ("hf_arrow_dictionary_index_out_of_range", hf_arrow_dictionary_index_out_of_range, False),
    ("hf_arrow_file_format", hf_arrow_file_format, False),
    ("hf_arrow_compressed", hf_arrow_compressed, False),
    ("hf_arrow_null_rows", hf_arrow_null_rows, False),
    ("hf_parquet_dictionary_bomb", hf_parquet_dictionary_bomb, False),
    ("hf_parquet_caption_dictionary_bomb", hf_parquet_caption_dictionary_bomb, False),
    ("hf_parquet_label_1e9", hf_parquet_label_1e9, False),
    ("hf_parquet_label_uint64", hf_parquet_label_uint64, False),
    ("hf_parquet_caption_500k", hf_parquet_caption_500k, False),
    ("hf_parquet_long_class_name", hf_parquet_long_class_name, False),
    ("hf_parquet_nested_metadata", hf_parquet_nested_metadata, False),
    ("hf_parquet_too_many_rows", hf_parquet_too_many_rows, False),
    ("hf_parquet_truncated", hf_parquet_truncated, False),
    ("hf_parquet_list_column", hf_parquet_list_column, False),
    ("hf_state_json_lists_fifo", hf_state_json_lists_fifo, True),
    ("hf_state_json_is_fifo", hf_state_json_is_fifo, True),
    ("hf_dataset_info_nested", hf_dataset_info_nested, False),
    ("hf_dataset_dict_nested", hf_dataset_dict_nested, False),
    ("hf_class_names_too_many", hf_class_names_too_many, False),
    ("hf_path_is_fifo", hf_path_is_fifo, True),
    ("hf_parquet_in_folder_is_fifo", hf_parquet_in_folder_is_fifo, True),
    ("hf_image_path_absolute", hf_image_path_absolute, False),
    ("hf_image_path_traversal", hf_image_path_traversal, False),
    ("hf_image_path_fifo", hf_image_path_fifo, True),
    ("hf_image_bytes_pixel_bomb", hf_image_bytes_pixel_bomb, False),
    ("hf_image_bytes_eps", hf_image_bytes_eps, False),
    ("task_folder_sparse_5gib_to_npz", task_folder_sparse_5gib_to_npz, False),
    ("task_folder_images_fifo", task_folder_images_fifo, True),
    ("task_folder_labels_fifo_main_ddpm", task_folder_labels_fifo_main_ddpm, True),
    ("task_folder_images_dev_zero_main_ddpm", task_folder_images_dev_zero_main_ddpm, True),
    ("task_file_fifo_convert", task_file_fifo_convert, True),
]
