"""Make ``atento`` importable from this checkout without installing it, and the carried wheels too.

The GPU machine's system python3 has torch and friends but not the project's venv, and nothing can
be fetched there. ``make gpu-check`` puts the symlink tree of ``make package-tree`` and the folder
the carried wheels were installed into (``pip install --no-deps --no-index --target``) on PYTHONPATH;
run directly (``python3 -m tests.gpu_check``), this module builds the same tree itself. Either way
the service subprocesses it starts inherit the path (``child_env``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TREE = ROOT / "build" / "package"
LINKS = {  # the installed package's layout -> this checkout's folders (pyproject's package-dir)
    "v1": "proto/atento/v1",
    "inference": "proto/atento/inference",
    "export": "export",
    "service": "service",
    "client": "clients/python",
}


def package_tree() -> Path:
    """build/package/atento/<part> -> the checkout's folder, as `make package-tree` lays it out."""
    package = TREE / "atento"
    package.mkdir(parents=True, exist_ok=True)
    for name, folder in LINKS.items():
        link = package / name
        if not link.is_symlink():
            link.symlink_to(ROOT / folder, target_is_directory=True)
    return TREE


def ensure_importable() -> None:
    """``atento`` from this checkout on sys.path (and on PYTHONPATH for child processes)."""
    spec = importlib.util.find_spec("atento.service")
    if spec is not None and spec.origin is not None and Path(spec.origin).resolve().is_relative_to(ROOT):
        return
    tree = str(package_tree())
    sys.path.insert(0, tree)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (tree, os.environ.get("PYTHONPATH", "")) if p)


def nvidia_library_dirs() -> list[str]:
    """The CUDA/cuDNN libraries pip put beside torch (site-packages/nvidia/*/lib), which
    onnxruntime-gpu loads too; a server subprocess (no torch import) finds them through these."""
    found: list[str] = []
    for entry in sys.path:
        base = Path(entry) / "nvidia"
        if base.is_dir():
            found += [str(lib) for lib in sorted(base.glob("*/lib")) if lib.is_dir()]
    return found


def child_env() -> dict[str, str]:
    """The environment of a server subprocess: this path, and the NVIDIA libraries' folders."""
    env = dict(os.environ)
    libraries = nvidia_library_dirs()
    if libraries:
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*libraries, env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    return env
