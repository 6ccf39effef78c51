"""`python3 -m tests.gpu_check --out DIR`: see tests/gpu_check/__init__.py and README, "CUDA".

Exit status: 0 every check passed on CUDA; 1 a check failed (the table names it); 3 no CUDA GPU
here: the CPU-only parts ran and their rows were written, the CUDA rows are still to be taken.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from .bootstrap import child_env, ensure_importable

ensure_importable()  # before anything imports atento

from .models import SHAPES, build  # noqa: E402
from .parity import held_out_texts, parity_rows  # noqa: E402
from .pinned import pinned_rows  # noqa: E402
from .placement import placement_rows  # noqa: E402
from .report import NOT_RUN, Row, guarded, write  # noqa: E402
from .serving import service_rows  # noqa: E402
from .speed import in_process, mean_tokens, measure, sentence_transformers, with_anchor  # noqa: E402

NO_GPU = 3
VERSIONS = ("torch", "onnxruntime", "onnxruntime-gpu", "transformers", "sentence-transformers", "onnx", "grpcio",
            "protobuf", "nvidia-ml-py")  # fmt: skip


def cuda_state() -> tuple[bool, str, str]:
    """(usable, device name, why not). torch is imported first: on a GPU machine it loads the CUDA
    and cuDNN libraries (pip's nvidia-* packages) that onnxruntime-gpu needs too."""
    import onnxruntime as ort
    import torch

    if hasattr(ort, "preload_dlls"):  # onnxruntime >= 1.21: the same libraries, found by ORT itself
        try:
            ort.preload_dlls()
        except Exception as error:  # best effort: a missing library shows below as no CUDA
            print(f"gpu-check: onnxruntime.preload_dlls: {error}", file=sys.stderr)
    cpu_name = platform.processor() or platform.machine()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        why = f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (carry onnxruntime-gpu: make gpu-wheels)"
        return False, cpu_name, why
    if not torch.cuda.is_available():
        return False, cpu_name, "torch sees no CUDA device"
    return True, torch.cuda.get_device_name(0), ""


@contextmanager
def stage(name: str, stages: dict[str, float]) -> Iterator[None]:
    """Time one part, and say so on stderr: the whole check must fit in 8 minutes on a GPU."""
    start = time.perf_counter()
    yield
    stages[name] = round(time.perf_counter() - start, 1)
    print(f"gpu-check: {name}: {stages[name]:.1f} s", file=sys.stderr)


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in VERSIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def speed_rows(models: Any, cuda: bool, texts: list[str], rounds: dict[str, int], workers: int) -> list[Row]:
    tokens = mean_tokens(models.bundles["fp32"], texts)
    device, dtype = ("cuda", "fp16") if cuda else ("cpu", "fp32")

    def anchor_rows() -> list[Row]:
        call = sentence_transformers(models.checkpoint, device, dtype)
        return measure("sentence-transformers encode (anchor)", device, dtype, call, texts, tokens, rounds[device])

    def in_process_rows(provider: str, bundle_dtype: str, bundle: Path, sessions: int = workers) -> list[Row]:
        call = in_process(bundle, provider, sessions)
        path = "in process (Runtime)" if sessions == workers else f"in process (Runtime, {sessions} session)"
        return measure(path, provider, bundle_dtype, call, texts, tokens, rounds[provider])

    anchor = guarded("speed", "sentence-transformers encode (anchor)", device, dtype, anchor_rows)
    rows = with_anchor(list(anchor), anchor)
    providers = ["cpu", "cuda"] if cuda else ["cpu"]
    for provider in providers:
        for bundle_dtype, bundle in models.bundles.items():
            work = partial(in_process_rows, provider, bundle_dtype, bundle)
            measured = guarded("speed", "in process (Runtime)", provider, bundle_dtype, work)
            rows += with_anchor(measured, anchor) if provider == device else measured
    if cuda and workers > 1:  # does a second session (CUDA stream) per GPU pay? the same loads on one
        one = partial(in_process_rows, "cuda", "fp16", models.bundles["fp16"], 1)
        rows += with_anchor(guarded("speed", "in process (Runtime, 1 session)", "cuda", "fp16", one), anchor)
    served = service_rows(models.bundles, providers, texts, tokens, rounds, workers)
    with_anchor([r for r in served if r.part == "speed" and r.provider == device], anchor)
    if not cuda:
        served.append(Row("speed", "CUDA: in process, service, sentence-transformers fp16", "cuda", "-", NOT_RUN))
    return rows + served


def _raise(error: Exception) -> list[Row]:
    raise error


def main(argv: Sequence[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="gpu-check", description=__doc__)
    cli.add_argument("--out", type=Path, required=True, help="folder for gpu-check.md, gpu-check.json and work/")
    cli.add_argument("--shape", choices=sorted(SHAPES), default="minilm", help="the random checkpoint's shape")
    cli.add_argument("--rounds", type=int, default=20, help="measured rounds of each load on CUDA")
    cli.add_argument("--cpu-rounds", type=int, default=3, help="measured rounds of each load on the CPU")
    cli.add_argument(
        "--reuse", action="store_true", help="keep the checkpoint and bundles of an earlier run in OUT/work"
    )
    cli.add_argument("--workers", type=int, default=2, help="--inference-workers (CUDA: one session/stream each)")
    cli.add_argument("--pinned-rounds", type=int, default=10, help="measured rounds of the pinned-core CPU part")
    args = cli.parse_args(argv)
    started = time.perf_counter()
    cuda, device, why = cuda_state()
    print(f"gpu-check: {'CUDA on ' + device if cuda else 'no CUDA (' + why + ')'}; building the {args.shape} bundles",
          file=sys.stderr)  # fmt: skip
    stages: dict[str, float] = {}
    with stage("checkpoint and bundles", stages):
        try:
            models = build(args.shape, args.out / "work", child_env(), args.reuse)
        except Exception as error:  # nothing else can run: say why, in the table too
            rows = guarded("export", "checkpoint and bundles", "cpu", "-", partial(_raise, error))
            write(args.out, rows, {"device": device, "cuda": cuda, "verdict": "export failed", "stages_s": stages})
            print(f"gpu-check: building the bundles failed: {error}", file=sys.stderr)
            return 1
    with stage("placement", stages):
        rows = guarded("placement", "placement", "-", "-", partial(placement_rows, models.bundles, cuda))
    with stage("parity", stages):
        rows += guarded("parity", "parity", "-", "-", partial(parity_rows, models.checkpoint, models.bundles, cuda))
    rounds = {"cuda": args.rounds, "cpu": args.cpu_rounds, "pinned": args.pinned_rounds}
    with stage("service and speed", stages):
        work = partial(speed_rows, models, cuda, held_out_texts(256), rounds, args.workers)
        rows += guarded("speed", "service and speed", "-", "-", work)
    with stage("pinned CPU path", stages):  # needs >= 4 cores; fewer: rows that say so
        work = partial(pinned_rows, models.bundles["fp32"], args.pinned_rounds, args.workers)
        rows += guarded("pinned", "pinned CPU path", "cpu", "fp32", work)
    failed = [r for r in rows if r.ok is False]
    verdict = f"{len(failed)} failed" if failed else ("all passed" if cuda else "CPU-only parts passed; CUDA not run")
    summary = {
        "device": device,
        "cuda": cuda,
        "no_cuda_reason": why,
        "shape": args.shape,
        "workers": args.workers,
        "rounds": rounds,
        "stages_s": stages,
        "seconds": time.perf_counter() - started,
        "command": "python3 -m tests.gpu_check " + " ".join(sys.argv[1:] if argv is None else argv),
        "python": platform.python_version(),
        "versions": versions(),
        "verdict": verdict,
    }
    table, data = write(args.out, rows, summary)
    if failed:
        names = "; ".join(f"{r.name} ({r.provider} {r.dtype}: {r.value})" for r in failed[:5])
        print(f"gpu-check: {len(failed)} check(s) failed: {names}; see {table}", file=sys.stderr)
        return 1
    if not cuda:
        print(f"gpu-check: no CUDA GPU here ({why}): ran the CPU-only parts, wrote {table} and {data}; "
              "the CUDA rows are still to be taken", file=sys.stderr)  # fmt: skip
        return NO_GPU
    print(f"gpu-check: all {sum(r.ok is True for r in rows)} checks passed on {device} in "
          f"{summary['seconds']:.0f} s; wrote {table} and {data}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
