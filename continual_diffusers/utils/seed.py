"""Deterministic randomness without global state: every random draw in training comes from a generator seeded by
(run seed, purpose, task, step, rank). Resuming at step s therefore replays exactly the same draws, with no RNG
state files to save, and results do not depend on how many steps ran before in the same process."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed that depends on `seed` and every element of `parts` (stable across runs and platforms)."""
    key = ":".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & (2**63 - 1)


def make_generator(seed: int, *parts: object, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *parts))
