"""Process-wide settings for a long training run: two defaults of the C library and of Python that cost a CPU
training loop time it need not spend. The training entry points train inside `with tuned_for_training():`; a
notebook that trains with `ContinualTrainer` may do the same (it changes the whole process).

1. glibc's malloc gives freed memory back to the kernel: a block above `M_MMAP_THRESHOLD` (128 KiB, raised
   dynamically up to 32 MiB) is a private mapping unmapped on free, and free memory above `M_TRIM_THRESHOLD` at the
   top of the heap is released. A training step frees every activation it made, so the next step faults the same
   pages back in, zero-filled by the kernel: on the 1.1 M-parameter UNet at batch 32 (32×32×3), about 22,000 minor
   page faults per step and 8 % of the training time in the kernel. Raising both thresholds keeps the freed
   activations in the heap for the next step. Peak RSS is a high-water mark, so it barely moves (the memory kept
   is what the step needs again); the resident size no longer falls back between steps.
2. Python's cyclic garbage collector scans every tracked object on a full collection: after importing torch,
   diffusers and accelerate that is about 430,000 objects and 0.2 s per `gc.collect()`, which accelerate's
   `free_memory` runs at every task end. `gc.freeze()` moves the objects alive at start (modules, classes, the
   model) to the permanent generation, so collections scan only what the run allocates afterwards. Leaving the
   `with` block unfreezes them: a frozen object is never collected, so a trainer dropped after training in a
   notebook or a test would otherwise never be freed if it sits in a reference cycle.

A variable the user set for glibc's allocator (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
`MALLOC_TOP_PAD_`, or `glibc.malloc` tunables in `GLIBC_TUNABLES`) is left as set; other C libraries are left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass

# mallopt(3) parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 256 << 20  # blocks up to 256 MiB come from the heap (activations of a large UNet at batch 32)
TRIM_THRESHOLD = 1 << 30  # up to 1 GiB of freed heap is kept for the next step (an int: mallopt takes a C int)
_USER_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


@dataclass(frozen=True)
class ProcessTuning:
    """What `tuned_for_training` changed: `malloc`, a sentence (thresholds set, or why not); `frozen_objects`,
    the objects moved to the garbage collector's permanent generation for the block."""

    malloc: str
    frozen_objects: int


@contextlib.contextmanager
def tuned_for_training(
    mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD
) -> Iterator[ProcessTuning]:
    """Keep freed memory in the heap (glibc only; it stays so after the block, as a process-wide allocator
    setting) and, for the block, freeze the objects alive now out of the cyclic garbage collector's scans (module
    docstring). Yields what it did."""
    malloc = _keep_freed_memory(mmap_threshold, trim_threshold)
    gc.freeze()
    try:
        yield ProcessTuning(malloc, gc.get_freeze_count())
    finally:
        gc.unfreeze()


def _keep_freed_memory(mmap_threshold: int, trim_threshold: int) -> str:
    """Set glibc's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD; the sentence says what was done."""
    for name, value in (("trim", trim_threshold), ("mmap", mmap_threshold)):
        if not 0 < value < 2**31:
            raise ValueError(f"the {name} threshold must be in (0, 2³¹) bytes (a C int), got {value}")
    if platform.system() != "Linux" or not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
        return "left alone: not glibc"
    user = [name for name in _USER_MALLOC_ENV if name in os.environ]
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        user.append("GLIBC_TUNABLES")
    if user:
        return f"left as set by {', '.join(user)}"
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success. The mmap threshold first: a glibc that caps it lower refuses it and nothing
    # changes; a trim threshold set alone would switch the dynamic mmap threshold off at its 128 KiB start and make
    # every activation a fresh mapping (far worse than the defaults).
    if mallopt(M_MMAP_THRESHOLD, mmap_threshold) != 1:
        return "left alone: this glibc's mallopt refused the mmap threshold"
    if mallopt(M_TRIM_THRESHOLD, trim_threshold) != 1:
        return "mmap threshold set; this glibc's mallopt refused the trim threshold"
    return f"glibc keeps freed blocks up to {mmap_threshold >> 20} MiB and {trim_threshold >> 20} MiB of free heap"
