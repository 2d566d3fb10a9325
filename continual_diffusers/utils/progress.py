"""Progress bars for loops that can run long (sampling, Fisher estimates, latent caches, data builders): on stderr,
on the main process only (each machine's local main process, as the trainer's task bar), shown at once
(`progress=True`), after `PROGRESS_DELAY_S` seconds (`None`: short calls such as tests print nothing) or never
(`False`). Use a bar as a context manager so an exception inside the loop closes it."""

from __future__ import annotations

import os

from tqdm.auto import tqdm

PROGRESS_DELAY_S = 5.0


def is_main_process() -> bool:
    """Whether this process shows progress bars: accelerate's local main process once an `Accelerator` (or
    `PartialState`) exists, else the process whose LOCAL_RANK (set by torchrun / accelerate launch) is 0 or unset."""
    from accelerate import PartialState

    if PartialState._shared_state:  # initialised: ask it (creating one here would initialise it)
        return PartialState().is_local_main_process
    return os.environ.get("LOCAL_RANK", "0") == "0"


def progress_bar(iterable=None, *, desc: str, progress: bool | None = None, leave: bool = True, **kwargs) -> tqdm:
    """A tqdm bar on stderr for a loop that can run long (see the module docstring): `progress` True shows it at once,
    None after `PROGRESS_DELAY_S` seconds, False never; never on a process other than the main one. Use it as a
    context manager (`with progress_bar(...) as bar:`) so an exception inside the loop closes it."""
    return tqdm(
        iterable,
        desc=desc,
        leave=leave,
        disable=progress is False or not is_main_process(),
        delay=0.0 if progress else PROGRESS_DELAY_S,
        **kwargs,
    )
