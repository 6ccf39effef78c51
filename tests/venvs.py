"""Clean virtualenvs holding exactly one install line of atento, to prove what an extra brings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def venv_with(directory: Path, *requirements: str) -> Path:
    """A fresh venv (no system site-packages) with ``pip install -c constraints.txt REQUIREMENTS``.

    Returns its python. Requirements may name the repository as ``{root}``, e.g. ``{root}[serve]``.
    """
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    python = directory / "bin" / "python"
    resolved = [r.replace("{root}", str(ROOT)) for r in requirements]
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-c",
            str(ROOT / "constraints.txt"),
            *resolved,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return python


def installed(python: Path) -> set[str]:
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    )
    return {line.split("==")[0].lower() for line in listing.stdout.splitlines() if "==" in line}
