"""Test helper (not a test module): run main_ddpm under `accelerate launch` and record, per process,
- the strategy state after training (replay buffer, EWC Fisher/anchors) and the UNet weights, to
  $MP_DUMP_DIR/rank_<r>.safetensors (+ .json for the non-tensor state), outside the output dir;
- every write the process makes under --output_dir, to $MP_DUMP_DIR/rank_<r>_writes.json: Python-level opens
  for writing, mkdir/rename/remove/rmtree (audit hooks), and torch.save / safetensors save_file calls (wrapped,
  since they write from C++/Rust without a Python `open`).

  accelerate launch --multi_gpu --num_processes 2 tests/mp_train.py <main_ddpm flags>
"""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def main() -> int:
    import safetensors.torch
    import torch

    import main_ddpm
    from continual_diffusers.training import checkpoint as ckpt
    from continual_diffusers.training.trainer import ContinualTrainer

    argv = sys.argv[1:]
    out = os.path.abspath(argv[argv.index("--output_dir") + 1])
    dump = os.environ["MP_DUMP_DIR"]
    rank = int(os.environ.get("RANK", "0"))
    writes: list = []

    def under_out(path) -> bool:
        try:
            full = os.path.abspath(os.fsdecode(path))
            return full == out or full.startswith(out + os.sep)
        except TypeError:  # a file descriptor
            return False

    def audit(event: str, args: tuple) -> None:
        if event == "open" and args[0] is not None and under_out(args[0]):
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (flags or 0) & WRITE_FLAGS:
                writes.append([event, os.fsdecode(args[0])])
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree") and under_out(args[0]):
            writes.append([event, os.fsdecode(args[0])])
        elif event == "os.rename" and (under_out(args[0]) or under_out(args[1])):
            writes.append([event, os.fsdecode(args[1])])

    def recording(fn, name):
        def wrapper(obj, path, *a, **k):
            if under_out(path):
                writes.append([name, os.fsdecode(path)])
            return fn(obj, path, *a, **k)

        return wrapper

    sys.addaudithook(audit)
    torch.save = recording(torch.save, "torch.save")
    ckpt.save_file = recording(ckpt.save_file, "save_file")
    fit = ContinualTrainer.fit

    def fit_and_dump(self, *args, **kwargs):
        fit(self, *args, **kwargs)
        tensors, rest = ckpt.split_state(self.strategy.state_dict())
        tensors.update({f"unet.{k}": v.contiguous() for k, v in self.model.unet.state_dict().items()})
        safetensors.torch.save_file(tensors, os.path.join(dump, f"rank_{rank}.safetensors"))
        with open(os.path.join(dump, f"rank_{rank}.json"), "w") as fh:
            json.dump(rest, fh)

    ContinualTrainer.fit = fit_and_dump
    salt = os.environ.get("MP_DRAW_SALT")
    if salt:  # other noise / augmentation / replay draws, same initialisation and batch order (the noise floor)
        from continual_diffusers.training import trainer

        derive = trainer.make_generator
        trainer.make_generator = lambda seed, *parts, **kw: derive(seed, "salt", salt, *parts, **kw)
    code = main_ddpm.main(argv)
    with open(os.path.join(dump, f"rank_{rank}_writes.json"), "w") as fh:
        json.dump(writes, fh)
    return code


if __name__ == "__main__":
    sys.exit(main())
