"""The images' lock files (deploy/locks/ROLE.txt) still say what pyproject.toml and constraints.txt say.

`make lint` runs this offline: no resolver, no index. For each role (an extra the images install),
every requirement of the role (the project's dependencies plus the extra) must be locked at a
version its specifier admits, the lock's direct requirements must be exactly those (a dropped
dependency leaves the lock too), every pin of constraints.txt must match, and every package must
carry its hashes. `make lock` regenerates the files with uv (a second or two, from PyPI).
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "deploy" / "locks"
ROLES = ("serve", "gpu")
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)")
DIRECT = "atento (pyproject.toml)"


@dataclass
class Locked:
    version: Version
    hashes: int = 0
    via: list[str] = field(default_factory=list)


def read_lock(path: Path) -> dict[str, Locked]:
    """Package -> version, number of hashes and `# via` lines, from uv's (or pip-compile's) output."""
    packages: dict[str, Locked] = {}
    current: Locked | None = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if match := PIN.match(line):
            current = packages[canonicalize_name(match[1])] = Locked(Version(match[2]))
        elif current and stripped.startswith("--hash=sha256:"):
            current.hashes += 1
        elif current and stripped.startswith("#"):
            current.via.append(stripped.lstrip("# ").removeprefix("via").strip())
    return packages


def role_requirements(role: str, root: Path = ROOT) -> list[Requirement]:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in (*project["dependencies"], *project["optional-dependencies"][role])]


def constraint_pins(root: Path = ROOT) -> dict[str, Version]:
    pins = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        if match := PIN.match(line):
            pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


def drift(role: str, root: Path = ROOT) -> list[str]:
    """What the lock of ``role`` gets wrong, one line each; empty when it agrees."""
    path = root / LOCKS.relative_to(ROOT) / f"{role}.txt"
    if not path.exists():
        return [f"{path.relative_to(root)} is missing"]
    locked = read_lock(path)
    problems = []
    wanted = {canonicalize_name(r.name): r for r in role_requirements(role, root)}
    for name, requirement in wanted.items():
        if name not in locked:
            problems.append(f"{requirement} is not locked")
        elif not requirement.specifier.contains(locked[name].version, prereleases=True):
            problems.append(f"{requirement} does not admit the locked {name}=={locked[name].version}")
    direct = {name for name, entry in locked.items() if DIRECT in entry.via}
    problems += [
        f"{name} is locked as a requirement of atento but pyproject no longer asks for it"
        for name in sorted(direct - set(wanted))
    ]
    for name, version in constraint_pins(root).items():
        if name in locked and locked[name].version != version:
            problems.append(f"constraints.txt pins {name}=={version}, the lock has {locked[name].version}")
    problems += [f"{name} has no hashes" for name, entry in locked.items() if not entry.hashes]
    return [f"{path.relative_to(root)}: {p}" for p in problems]


def main() -> int:
    problems = [p for role in ROLES for p in drift(role)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("the lock files drifted from pyproject.toml/constraints.txt: run `make lock` and commit", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
