"""All-or-nothing output of a conversion: every file is written into a hidden staging folder inside the output
folder, and moved into place only once all of them are complete.

A conversion that writes a train file and then finds a broken image in the test split would otherwise leave the
train file behind. With `StagedOutput`, a refusal at any point leaves the output folder as it was, and a missing
output folder (with any missing parents) is removed again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from continual_diffusers.data.lazy import check_replaceable, replace_folder
from continual_diffusers.utils.display import safe_display
from continual_diffusers.utils.errors import UserInputError


def _missing_parents(folder: Path) -> list[Path]:
    """`folder` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


class StagedOutput:
    """`with StagedOutput(output_dir) as out:` write to `out.staged(name)`, then `out.commit()`; leaving the block
    without a commit (an exception) removes everything staged and any folder the block created.

    Targets are checked before anything is written: an `.npz` target must not be a folder, a task-folder target
    must be absent, empty or a task folder (`lazy.check_replaceable`).
    """

    def __init__(self, output_dir: str | os.PathLike, names: list[str]):
        self.output_dir = Path(output_dir)
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise UserInputError(f"{safe_display(self.output_dir, 300)}: exists and is not a folder (--output_dir)")
        self.names = list(names)
        for name in self.names:
            target = self.output_dir / name
            if name.endswith(".npz"):
                if target.is_dir() and not target.is_symlink():
                    raise UserInputError(f"{safe_display(target, 300)}: is a folder; refusing to replace it")
            else:
                check_replaceable(target)
        self.stage: Path | None = None
        self.created: list[Path] = []

    def __enter__(self) -> StagedOutput:
        self.created = _missing_parents(self.output_dir)
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self.stage = Path(tempfile.mkdtemp(dir=self.output_dir, prefix=".staging-", suffix=".tmp"))
        except OSError as error:
            self._remove_created()
            raise UserInputError(
                f"{safe_display(self.output_dir, 300)}: cannot write ({error.strerror or error})"
            ) from None
        return self

    def staged(self, name: str) -> Path:
        """Where to write output `name` (one of the names given) until the commit."""
        assert self.stage is not None and name in self.names
        return self.stage / name

    def commit(self) -> dict[str, Path]:
        """Move every staged output into place; {name: final path}."""
        final = {}
        for name in self.names:
            source, target = self.staged(name), self.output_dir / name
            try:
                if source.is_dir():
                    os.chmod(source, 0o755)
                    replace_folder(source, target)
                else:
                    os.replace(source, target)
            except OSError as error:
                what = error.strerror or error
                raise UserInputError(f"{safe_display(target, 300)}: cannot write ({what})") from None
            final[name] = target
        return final

    def _remove_created(self) -> None:
        for folder in self.created:  # deepest first; only folders that are still empty
            try:
                folder.rmdir()
            except OSError:
                break

    def __exit__(self, kind, error, traceback) -> None:
        if self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
        if kind is not None:
            self._remove_created()
