"""`python -m atento.export` / `atento export`: build a bundle from a checkpoint."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from atento.service.bundle import Bundle, BundleError

from .config import CheckpointError, read_checkpoint_config, supported_model_types
from .tolerances import TOLERANCES, ParityError, flatten


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments end in one line on stderr and exit status 2, never a traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser(prog: str = "atento export") -> argparse.ArgumentParser:
    cli = OneLineParser(
        prog=prog,
        description="Export a Transformer encoder (model_type: "
        + supported_model_types()
        + ") to an ONNX bundle with fused attention.",
    )
    cli.add_argument(
        "--model", help="'minilm' (embedded default), 'tiny' (random, for tests) or a checkpoint directory"
    )
    cli.add_argument(
        "--from-bundle", type=Path, help="with --quantize: derive from this fp32 bundle instead (no torch)"
    )
    cli.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    cli.add_argument("--force", action="store_true", help="replace --out if it exists")
    cli.add_argument(
        "--dtype",
        choices=["fp32", "fp16"],
        default="fp32",
        help="fp16: half-precision weights and activations, for GPUs (parity bounds recorded in the manifest)",
    )
    cli.add_argument(
        "--quantize",
        choices=["int8"],
        help="int8: dynamic per-token int8 feed-forward (VNNI/AMX), checked against fp32",
    )
    return cli


def summary(bundle: Bundle) -> str:
    lines = [f"bundle {bundle.directory} ({bundle.model.name}, sha256 {bundle.sha256[:12]})", "parity:"]
    for key, value in flatten({k: v for k, v in bundle.manifest["parity"].items() if k != "tolerances"}).items():
        bound = TOLERANCES.get(key)
        lines.append(f"  {key:<48} {value:<12.7g}" + (f" bound {bound:g}" if bound is not None else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "atento export") -> int:
    cli = parser(prog)
    args = cli.parse_args(argv)
    if args.from_bundle is not None and (args.model is not None or args.quantize is None):
        cli.error("--from-bundle goes with --quantize, and not with --model")
    args.model = args.model or "minilm"
    if args.model not in ("minilm", "tiny") and not Path(args.model).is_dir():
        cli.error(f"--model {args.model!r} is neither 'minilm', 'tiny' nor a checkpoint directory")
    if args.model not in ("minilm", "tiny"):
        try:  # an unsupported model is refused in one line, before torch loads
            read_checkpoint_config(Path(args.model))
        except CheckpointError as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
            return 1
    if args.out.exists() and not args.force and (not args.out.is_dir() or any(args.out.iterdir())):
        cli.error(f"--out {args.out} exists and is not empty (pass --force to replace it)")
    try:  # torch and onnx load only once the arguments are good
        from .bundle_builder import build_bundle, quantize_bundle
    except ImportError as error:
        print(f"{prog}: the exporter needs its extra: pip install 'atento[export]': {error}", file=sys.stderr)
        return 2

    def report(line: str) -> None:
        print(line, file=sys.stderr)

    try:
        if args.from_bundle is not None:
            bundle = quantize_bundle(args.from_bundle, args.out, force=args.force, report=report)
        else:
            bundle = build_bundle(
                args.model, args.out, force=args.force, quantize=args.quantize, dtype=args.dtype, report=report
            )
    except (CheckpointError, BundleError, ParityError, FileExistsError, OSError, ValueError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    print(summary(bundle))
    return 0
