"""The package's layering, read from the package docstring (the one place it is written down) and checked against
every import of every module, parsed with `ast` (nothing is imported): relative and absolute, at module level and
inside functions."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "continual_diffusers"


def declared_layers() -> dict[str, int]:
    """{sub-package: layer} from the "Layers" table of continual_diffusers/__init__.py's docstring."""
    doc = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text()))
    table = doc.split("Layers, lowest first.", 1)[1]
    layers = {}
    for line in table.splitlines():
        match = re.fullmatch(r"\s+(\d+)\s+([a-z_ ]+)", line)
        if match:
            layers.update({name: int(match.group(1)) for name in match.group(2).split()})
    return layers


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """{(sub-package of continual_diffusers it imports, line)} of one module."""
    module = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = module[:-1] if module[-1] != "__init__" else module[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[: len(package) - node.level + 1])
            if node.module:
                targets = [base + node.module.split(".")]
            else:
                targets = [base + [alias.name] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE.name:
            targets = [node.module.split(".")]
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".") for a in node.names if a.name.split(".")[0] == PACKAGE.name]
        for target in targets:
            if len(target) > 1:
                found.add((target[1], node.lineno))
    return found


def sub_package(path: Path) -> str | None:
    parts = path.relative_to(PACKAGE).parts
    return None if len(parts) == 1 and parts[0] == "__init__.py" else Path(parts[0]).stem


def test_the_layers_cover_every_sub_package():
    layers = declared_layers()
    present = {sub_package(p) for p in PACKAGE.rglob("*.py")} - {None}
    assert present == set(layers), f"undeclared: {present - set(layers)}; declared but absent: {set(layers) - present}"


def test_imports_point_to_lower_layers_only():
    layers = declared_layers()
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = sub_package(path)
        if here is None:  # the package's __init__: the lazy facade over every layer
            continue
        # A package's __main__ (python -m continual_diffusers.<package>) is an entry point at cli's layer.
        level = layers["cli"] if path.name == "__main__.py" else layers[here]
        for target, line in imported_packages(path):
            if target != here and target in layers and layers[target] >= level:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {here} (layer {level}) imports "
                             f"{target} (layer {layers[target]})")  # fmt: skip
    assert not wrong, "\n".join(sorted(wrong))


def test_no_module_imports_an_entry_point():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += (
                [a.name for a in getattr(node, "names", [])] if isinstance(node, ast.Import | ast.ImportFrom) else []
            )
            if any(name.split(".")[-1] == "__main__" for name in names):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not wrong, wrong


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..cli import x", {("cli", 1)}),
        ("def f():\n    from ...training.checkpoint import y", {("training", 2)}),
        ("import continual_diffusers.sampling.generate", {("sampling", 1)}),
        ("from .. import strategies", {("strategies", 1)}),
        ("from .base import z", {("models", 1)}),
    ],
)
def test_the_import_parser_sees_relative_absolute_and_lazy_imports(tmp_path, monkeypatch, source, expected):
    """A module at continual_diffusers/models/conditioning/x.py (or models/x.py for one-dot imports)."""
    depth = "models/conditioning" if "..." in source else "models"
    path = PACKAGE / depth / "_layering_probe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    assert imported_packages(path) == expected
