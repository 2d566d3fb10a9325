"""`utils.tuned_for_training`: freed activations stay in the heap (counted in minor page faults, not time), the
objects alive at the start of the block leave the garbage collector's scans until its end, and an allocator the
user configured is kept.
Each case runs in a fresh interpreter: the settings are process-wide."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Training steps of a small UNet (16×16×3, batch 32): each step allocates and frees its activations (~1 MiB
# blocks). With glibc's defaults the freed blocks go back to the kernel and the next step faults them in again
# (about 6,000 minor faults per step here); kept in the heap, a step reuses them (about 150).
LOOP = """
import contextlib, gc, json, resource, sys, weakref
from continual_diffusers.utils import tuned_for_training
class Node:
    pass
cycle = Node()
cycle.me = cycle  # freed only by the cyclic collector
ref = weakref.ref(cycle)
with tuned_for_training() if sys.argv[1] == "tuned" else contextlib.nullcontext() as tuning:
    if sys.argv[2] == "settings only":
        print(json.dumps({"malloc": tuning.malloc}))
        sys.exit()
    del cycle
    gc.collect()
    collected_inside = ref() is None
    import torch
    from diffusers import UNet2DModel
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    optimizer = torch.optim.AdamW(unet.parameters())
    x, t = torch.randn(32, 3, 16, 16), torch.randint(0, 1000, (32,))
    def step():
        unet(x, t).sample.pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step(); step()  # the first steps fault their pages in either way
    before = faults()
    for _ in range(5):
        step()
    result = {"faults": (faults() - before) / 5, "malloc": tuning and tuning.malloc,
              "frozen": gc.get_freeze_count(), "collected_inside": collected_inside}
gc.collect()
print(json.dumps({**result, "frozen_after": gc.get_freeze_count(), "collected_after": ref() is None}))
"""

glibc = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")),
    reason="the allocator settings are glibc's",
)


def run_loop(mode: str, what: str = "steps", **env) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    environ.update(PYTHONPATH=ROOT, OMP_NUM_THREADS="1", **env)
    done = subprocess.run(
        [sys.executable, "-c", LOOP, mode, what], capture_output=True, text=True, env=environ, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def loops() -> dict:
    return {"default": run_loop("default"), "tuned": run_loop("tuned")}


@glibc
def test_freed_blocks_are_reused_instead_of_faulted_back_in(loops):
    default, tuned = loops["default"], loops["tuned"]
    assert default["faults"] > 2_000, default  # each step faults its activations in again
    assert tuned["faults"] < default["faults"] / 5, (default, tuned)
    assert tuned["malloc"].startswith("glibc keeps freed blocks up to 256 MiB")
    assert tuned["frozen"] > 10_000 and default["frozen"] == 0  # torch's modules and classes, at least


@glibc
def test_objects_frozen_for_the_block_are_collected_after_it(loops):
    """A reference cycle alive when the block starts is frozen inside it and collected after it (not leaked)."""
    tuned = loops["tuned"]
    assert not tuned["collected_inside"] and tuned["frozen_after"] == 0 and tuned["collected_after"]


@glibc
def test_an_allocator_the_user_configured_is_left_as_set():
    kept = run_loop("tuned", "settings only", MALLOC_TRIM_THRESHOLD_="131072")
    assert kept["malloc"] == "left as set by MALLOC_TRIM_THRESHOLD_"
    tunables = run_loop("tuned", "settings only", GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")
    assert tunables["malloc"] == "left as set by GLIBC_TUNABLES"


def test_thresholds_must_fit_a_c_int():
    from continual_diffusers.utils import tuned_for_training

    with pytest.raises(ValueError, match="mmap threshold must be in"):
        with tuned_for_training(mmap_threshold=2**31):
            pass
