"""``python -m tests.gpu_check.pin CORES MODULE ARGS...``: run MODULE as ``python -m`` would, pinned
to CORES (``0,1``) with ``os.sched_setaffinity`` first, before anything is imported: numpy's BLAS,
ONNX Runtime and gRPC start threads early, and a thread keeps the affinity it was created with.
Only the standard library here, for that reason (pinned.py launches the server and the loads so).
"""

from __future__ import annotations

import os
import runpy
import sys


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m tests.gpu_check.pin CORES MODULE [ARGS...]")
    os.sched_setaffinity(0, [int(core) for core in argv[0].split(",")])
    sys.argv = argv[1:]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
