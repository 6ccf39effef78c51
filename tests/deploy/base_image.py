"""The container tests' base image: Debian bookworm made by debootstrap, imported into podman.

No container registry is reachable here, so `python:3.11-slim-bookworm` (what the Dockerfiles name
for users) is replaced by an image built from the Debian mirror: `debootstrap --variant=minbase`
plus Python 3.11 in a venv on PATH (pip and python as the slim image has them) and this machine's
CA certificates, pip pointed at them (the network here passes through a TLS-inspecting proxy).
The tarball is cached, keyed by everything that goes into it, so a rerun imports in seconds while
a clean machine builds it from nothing (about three minutes on 2 cores).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# python3-venv brings ensurepip's wheels; ca-certificates the system bundle pip is pointed at.
PACKAGES = ("python3", "python3-venv", "ca-certificates")
VENV = "/opt/venv"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
# What the image sets, as `podman import --change` instructions (the slim image's PATH, venv first).
CHANGES = (
    f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    f"ENV PIP_CERT={CA_BUNDLE}",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
NAME = "localhost/atento-base"


def cache_dir() -> Path:
    return Path(os.environ.get("ATENTO_IMAGE_CACHE", Path.home() / ".cache" / "atento" / "images"))


def local_cas() -> list[Path]:
    return sorted(LOCAL_CAS.glob("*.crt")) if LOCAL_CAS.is_dir() else []


def key() -> str:
    """A digest of every input of the tarball: suite, mirror, packages, settings, this machine's CAs."""
    digest = hashlib.sha256(repr((SUITE, MIRROR, PACKAGES, VENV, CHANGES)).encode())
    digest.update(Path(__file__).read_bytes())
    for ca in local_cas():
        digest.update(ca.read_bytes())
    return digest.hexdigest()[:16]


def build_rootfs(tarball: Path) -> None:
    """debootstrap, the CAs and the venv into a temporary root, packed as a tarball."""
    with tempfile.TemporaryDirectory(prefix="atento-rootfs-") as tmp:
        root = Path(tmp) / "root"
        run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root), MIRROR])
        for ca in local_cas():
            shutil.copy(ca, root / LOCAL_CAS.relative_to("/") / ca.name)
        run(["chroot", str(root), "update-ca-certificates", "--fresh"])
        run(["chroot", str(root), "python3", "-m", "venv", VENV])
        (root / "etc" / "pip.conf").write_text(f"[global]\ncert = {CA_BUNDLE}\n")
        # The slim image carries no package cache, lists, manuals or translations; neither does this one.
        for cached in (*(root / "var/cache/apt/archives").glob("*.deb"), *(root / "var/lib/apt/lists").glob("*_*")):
            cached.unlink()
        for docs in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale"):
            shutil.rmtree(root / docs, ignore_errors=True)
        partial = tarball.with_suffix(".partial")
        run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."])
        partial.rename(tarball)


def ensure() -> str:
    """The base image's name in podman's storage, built or imported only when missing."""
    name = f"{NAME}:{key()}"
    if subprocess.run(["podman", "image", "exists", name], check=False).returncode == 0:
        return name
    tarball = cache_dir() / f"atento-base-{key()}.tar"
    if not tarball.exists():
        tarball.parent.mkdir(parents=True, exist_ok=True)
        build_rootfs(tarball)
    run(["podman", "import", *(f"--change={change}" for change in CHANGES), str(tarball), name])
    return name


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
