"""Fault injection for the reliability tests: kill the process at a named point, the way a crash or `kill -9` would.

    CONTINUAL_DIFFUSERS_FAULT=<point>:<n>   the n-th time `fault_point("<point>")` is reached (n >= 1, default 1),
                                            the process sends itself SIGKILL: no cleanup, no atexit, no flush.

Points (grep `fault_point(` for where): train_step (after backward, before the optimizer step), checkpoint_files
(between two files of a checkpoint), checkpoint_rename (written and fsync'ed, not yet renamed),
checkpoint_prune (an old checkpoint half-deleted), export_done (task_k/ written, end-of-task checkpoint not yet),
task_eval (inside the end-of-task evaluation), ewc_fisher (inside the Fisher estimate), replay_filled (buffer
filled, Fisher not yet estimated), between_tasks (end-of-task checkpoint written, next task not started).

The variable is read once at import; when it is unset `fault_point` is a single comparison with None.
"""

from __future__ import annotations

import os
import signal

ENV = "CONTINUAL_DIFFUSERS_FAULT"
_SPEC = os.environ.get(ENV) or None
_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    if _SPEC is not None:
        _maybe_kill(name)


def _maybe_kill(name: str) -> None:
    point, _, nth = _SPEC.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
