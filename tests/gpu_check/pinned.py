"""The CPU path where cores are not shared: the service pinned to 2 cores, its load generator on
others, against in-process ONNX Runtime pinned to the same 2 cores (32 x 1 and 4 x 32 texts).

On a 2-core machine the load generator takes the server's cores, so the service's efficiency
against in-process ORT cannot be read there; this part needs at least 4 usable cores and, short of
them, writes rows that say so (not a failure). Each side runs in a subprocess of its own, pinned by
pin.py before it imports anything, so the check's own affinity is untouched: the server, and
``python -m tests.gpu_check.pinned BUNDLE ...``, which runs the loads (through the service, or in
process) and prints their rows as JSON. Both sides run ORT with as many intra-op threads as the
server has cores, and the same inference workers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from .bootstrap import ROOT, child_env, ensure_importable

ensure_importable()  # before anything imports atento (in the pinned subprocesses too)

from atento.client import Client  # noqa: E402

from .parity import held_out_texts  # noqa: E402
from .report import Row  # noqa: E402
from .serving import start  # noqa: E402
from .speed import in_process, mean_tokens, measure  # noqa: E402

PART = "pinned"
SERVER_CORES = 2
LOADS = ((32, 1), (4, 32))  # (concurrent calls, texts per call)
SERVICE = f"service (gRPC Embed), server on {SERVER_CORES} pinned cores"
IN_PROCESS = f"in process (Runtime), on the same {SERVER_CORES} cores"
MEASURE_TIMEOUT_S = 600


def split_cores(
    usable: Iterable[int], server: int = SERVER_CORES, physical: Mapping[int, Hashable] | None = None
) -> tuple[list[int], list[int]] | None:
    """(the server's cores, the load generator's cores) out of the ``usable`` ones, or None when
    fewer than ``2 * server`` physical cores are usable. ``physical``: each core's physical core
    (``topology()``); hyperthread siblings share one core's execution units, so the split is by
    physical core: the server gets the first logical core of each of the ``server`` lowest physical
    cores (their siblings stay idle), the load generator every logical core of all the others."""
    groups: dict[Hashable, list[int]] = {}
    for core in sorted(set(usable)):
        groups.setdefault((physical or {}).get(core, ("logical", core)), []).append(core)
    ordered = sorted(groups.values())  # by each physical core's lowest logical one
    if len(ordered) < 2 * server:
        return None
    return [group[0] for group in ordered[:server]], sorted(core for group in ordered[server:] for core in group)


def topology(usable: Iterable[int]) -> dict[int, Hashable]:
    """Each usable core's (package, core id) from sysfs; a core whose topology cannot be read is its own."""
    found: dict[int, Hashable] = {}
    for core in usable:
        folder = Path(f"/sys/devices/system/cpu/cpu{core}/topology")
        try:
            found[core] = (
                (folder / "physical_package_id").read_text().strip(),
                (folder / "core_id").read_text().strip(),
            )
        except OSError:
            continue
    return found


def not_run_status(physical: int, logical: int) -> str:
    threads = f" ({logical} logical)" if logical != physical else ""
    return f"not run: needs ≥ {2 * SERVER_CORES} cores, this machine has {physical}{threads}"


def pinned_command(cores: Sequence[int], module: str, *args: str) -> list[str]:
    """``python -m MODULE ARGS`` pinned to ``cores`` (pin.py)."""
    return [sys.executable, "-m", "tests.gpu_check.pin", ",".join(map(str, cores)), module, *args]


def measure_pinned(cores: Sequence[int], bundle: Path, rounds: int, workers: int, target: str = "") -> list[Row]:
    """The loads from a subprocess pinned to ``cores``: through the service at ``target``, or in process."""
    args = [str(bundle), "--rounds", str(rounds), "--workers", str(workers), "--target", target]
    command = pinned_command(cores, "tests.gpu_check.pinned", *args)
    done = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=MEASURE_TIMEOUT_S,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"pinned measure on cores {cores} exited {done.returncode}: {done.stderr[-2000:]}")
    return [Row(**row) for row in json.loads(done.stdout.strip().splitlines()[-1])]


def pinned_rows(bundle: Path, rounds: int, workers: int) -> list[Row]:
    """The rows of this part: measured, each service row with its ratio to in process; or not run."""
    usable = sorted(os.sched_getaffinity(0))
    physical = topology(usable)
    split = split_cores(usable, physical=physical)
    if split is None:
        status = not_run_status(len({physical.get(core, core) for core in usable}), len(usable))
        return [Row(PART, path, "cpu", "fp32", status, detail={"load": f"{calls} x {texts}", "usable": usable})
                for path in (SERVICE, IN_PROCESS) for calls, texts in LOADS]  # fmt: skip
    server_cores, load_cores = split
    local = measure_pinned(server_cores, bundle, rounds, workers)
    threads = ("--intra-op-threads", str(len(server_cores)))
    server = start(bundle, "cpu", workers, threads, pinned_command(server_cores, "atento.service"))
    try:
        served = measure_pinned(load_cores, bundle, rounds, workers, server.target)
    finally:
        server.terminate()
    by_load = {row.detail["load"]: float(row.value or 0) for row in local}
    for row in served:
        row.detail["service_vs_in_process"] = float(row.value or 0) / by_load[row.detail["load"]]
    for row in served:
        row.detail |= {"server_cores": server_cores, "load_cores": load_cores}
    for row in local:  # in process the callers share the server's cores: that is the reference
        row.detail |= {"server_cores": server_cores, "load_cores": server_cores}
    return served + local


def main(argv: Sequence[str]) -> None:
    """The loads from this (pinned) process; prints their rows as one JSON line."""
    cli = argparse.ArgumentParser(prog="python -m tests.gpu_check.pin CORES tests.gpu_check.pinned")
    cli.add_argument("bundle", type=Path)
    cli.add_argument("--rounds", type=int, required=True)
    cli.add_argument("--workers", type=int, required=True)
    cli.add_argument("--target", default="", help="the service's host:port; none: in process")
    args = cli.parse_args(argv)
    texts = held_out_texts(256)
    tokens = mean_tokens(args.bundle, texts)
    if args.target:
        with Client(args.target, timeout=120) as client:

            def call(batch: Sequence[str], caller: int) -> object:
                return client.embed(list(batch), truncate=True)

            rows = measure(SERVICE, "cpu", "fp32", call, texts, tokens, args.rounds, LOADS)
    else:
        cores = len(os.sched_getaffinity(0))
        work = in_process(args.bundle, "cpu", args.workers, intra_op_threads=cores)
        rows = measure(IN_PROCESS, "cpu", "fp32", work, texts, tokens, args.rounds, LOADS)
    for row in rows:  # the median round's texts/s: one slow round (a page fault, a neighbour) moves it least
        row.part, row.value = PART, row.detail["median_round_texts_per_s"]
    print(json.dumps([asdict(row) for row in rows]))


if __name__ == "__main__":
    main(sys.argv[1:])
