"""The installed versions of the dependencies whose floors are security floors (docs/reliability-and-threat-model.md)
meet the floors pyproject.toml states: read from pyproject.toml, not repeated here, so raising a floor there is all it
takes."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")  # tomllib: Python 3.11+

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SECURITY_FLOORS = {"torch": "dependencies", "pillow": "dependencies", "pyarrow": "data"}  # package → where stated


def stated_requirements() -> dict[str, list[Requirement]]:
    """{section: requirements} of the core dependencies ("dependencies") and each extra."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    sections = {"dependencies": project["dependencies"], **project.get("optional-dependencies", {})}
    return {name: [Requirement(text) for text in texts] for name, texts in sections.items()}


def floor(requirement: Requirement) -> Version:
    lower = [Version(spec.version) for spec in requirement.specifier if spec.operator in (">=", "==", "~=")]
    assert len(lower) == 1, f"{requirement}: expected one lower bound"
    return lower[0]


def test_every_security_floor_is_stated_where_expected_and_agrees_across_extras():
    requirements = stated_requirements()
    for package, section in SECURITY_FLOORS.items():
        assert any(r.name.lower() == package for r in requirements[section]), f"{package} not in {section}"
        floors = {str(floor(r)) for reqs in requirements.values() for r in reqs if r.name.lower() == package}
        assert len(floors) == 1, f"{package} has different floors in pyproject.toml: {sorted(floors)}"


@pytest.mark.parametrize("package", sorted(SECURITY_FLOORS))
def test_installed_version_meets_the_stated_floor(package):
    try:
        installed = Version(importlib.metadata.version(package))
    except importlib.metadata.PackageNotFoundError:
        if SECURITY_FLOORS[package] != "dependencies":
            pytest.skip(f"{package} (extra {SECURITY_FLOORS[package]!r}) is not installed")
        raise
    requirement = next(r for r in stated_requirements()[SECURITY_FLOORS[package]] if r.name.lower() == package)
    assert installed >= floor(requirement), f"{package} {installed} is below {requirement}"
