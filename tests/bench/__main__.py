"""`make bench`: the side-by-side benchmark. Writes its tables into BENCHMARKS.md.

    python -m tests.bench [--quick] [--repeats N] [--texts N] [--out BENCHMARKS.md]

Every workload runs once per round, in the same order, for several rounds (so drift hits all
alike); the tables give medians over rounds and ratios between workloads of the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from atento.client import AttentionSelection
from atento.export.sources import minilm_directory
from atento.service.bundle import read_bundle

from tests.bench import report, workloads
from tests.bench.machine import matmul_peak_gflops, peak_rss_mib
from tests.conftest import ROOT, export_bundle
from tests.servers import ServerProcess, running_server

CORPUS = ROOT / "tests" / "data" / "corpus" / "pride_and_prejudice.txt"


def ensure_bundle(path: Path, int8_from: Path | None = None) -> Path:
    """The MiniLM bundle at ``path``, exported if missing; with ``int8_from``, quantised from that one."""
    if not (path / "manifest.json").is_file():
        print(f"building {path} ...", file=sys.stderr)
        if int8_from is None:
            result = export_bundle("minilm", path)
        else:
            command = [sys.executable, "-m", "atento.export", "--from-bundle", str(int8_from), "--quantize", "int8"]
            result = subprocess.run([*command, "--out", str(path)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(result.stderr)
    return path


def corpus(count: int) -> list[str]:
    lines = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    step = max(1, len(lines) // count)  # spread over the whole novel: every kind of sentence
    return lines[::step][:count]


@contextlib.contextmanager
def servers(fp32: Path, int8: Path, extra: list[str]) -> Iterator[dict[str, ServerProcess]]:
    with contextlib.ExitStack() as stack:
        yield {
            "fp32": stack.enter_context(running_server(fp32, *extra)),
            "fp32_no_attention": stack.enter_context(running_server(fp32, "--no-attention-maps", *extra)),
            "int8": stack.enter_context(running_server(int8, *extra)),
        }


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m tests.bench")
    cli.add_argument("--quick", action="store_true", help="a small smoke run (CI): few texts, one round")
    cli.add_argument("--repeats", type=int, help="rounds (default 3; 1 with --quick)")
    cli.add_argument("--texts", type=int, help="texts per workload (default 2000; 96 with --quick)")
    cli.add_argument("--bundles", type=Path, default=ROOT / "bundles", help="where the fp32 and int8 bundles live")
    cli.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    cli.add_argument("--only", help="comma-separated workloads to run (exploring; no file is written)")
    cli.add_argument("--server-args", default="", help="extra `atento serve` flags for the fp32 server (exploring)")
    args = cli.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    count = args.texts or (96 if args.quick else 2000)
    calls = 32 if args.quick else 300

    fp32 = ensure_bundle(args.bundles / "minilm")
    int8 = ensure_bundle(args.bundles / "minilm-int8", int8_from=fp32)
    bundle = read_bundle(fp32, verify=False)
    texts = workloads.Texts(corpus(count), bundle.tokenizer_file, bundle.model.max_tokens)
    single = workloads.Texts(corpus(calls), bundle.tokenizer_file, bundle.model.max_tokens)
    long_text = " ".join(corpus(400))  # cut to exactly 128 tokens below
    ids = texts.tokenizer.encode_batch([long_text])[0]
    text_128 = long_text[: ids.offsets[126][1]]  # 126 word pieces + [CLS] + [SEP]
    attention_texts = workloads.Texts(
        [text_128] * (8 if args.quick else 60), bundle.tokenizer_file, bundle.model.max_tokens
    )
    assert len(attention_texts.encoded[0]) == 128

    peak = matmul_peak_gflops()
    with servers(fp32, int8, args.server_args.split()) as running:
        fp32_server, plain_server, int8_server = running["fp32"], running["fp32_no_attention"], running["int8"]
        fast = workloads.ort_session(fp32 / "encoder.onnx")
        quantized = workloads.ort_session(int8 / "encoder.onnx")
        plan: dict[str, workloads.Workload] = {
            "torch_eager": workloads.torch_eager(texts, minilm_directory()),
            "sentence_transformers": workloads.sentence_transformers(texts, minilm_directory()),
            "ort_in_process": workloads.ort_in_process(fast, texts),
            "ort_in_process_sorted": workloads.ort_in_process(fast, texts, by_length=True),
            "ort_in_process_packed": workloads.ort_in_process(fast, texts, packed=workloads.ROW_TOKENS),
            "service_32x1": workloads.service_load(fp32_server.target, texts, clients=32, per_call=1),
            "service_32x1_no_attention_graph": workloads.service_load(
                plain_server.target, texts, clients=32, per_call=1
            ),
            "service_4x32": workloads.service_load(fp32_server.target, texts, clients=4, per_call=32),
            "ort_single_text": workloads.ort_single_latency(fast, single, calls),
            "service_1x1": workloads.service_latency(fp32_server.target, single),
            "attention_none_128": workloads.service_latency(fp32_server.target, attention_texts),
            "attention_all_128": workloads.service_latency(fp32_server.target, attention_texts, AttentionSelection()),
            "int8_in_process": workloads.ort_in_process(quantized, texts, packed=workloads.ROW_TOKENS),
            "int8_service_32x1": workloads.service_load(int8_server.target, texts, clients=32, per_call=1),
        }
        if args.only:
            plan = {name: plan[name] for name in args.only.split(",")}
        results: dict[str, list[workloads.Measurement]] = {name: [] for name in plan}
        padding: list[float] = []
        for round_ in range(repeats):
            for name, workload in plan.items():
                print(f"round {round_ + 1}/{repeats}: {name} ...", file=sys.stderr)
                if name == "service_32x1":
                    before = (fp32_server.metric("atento_tokens_total"), fp32_server.metric("atento_batch_tokens_sum"))
                results[name].append(workload())
                if name == "service_32x1":
                    real = fp32_server.metric("atento_tokens_total") - before[0]
                    padded = fp32_server.metric("atento_batch_tokens_sum") - before[1]
                    padding.append(1 - real / padded)
        rss = {name: peak_rss_mib(server.process.pid) for name, server in running.items()}
    if args.only:
        for name, measurements in results.items():
            m = sorted(measurements, key=lambda m: m.texts_per_s)[len(measurements) // 2]
            p50 = f", p50 {m.percentile(50) * 1000:.2f} ms" if m.latencies else ""
            print(f"{name:<34} {m.texts_per_s:8.1f} texts/s {m.tokens_per_s:9.0f} tokens/s{p50}")
        if padding:
            print(f"padding waste {sorted(padding)[len(padding) // 2]:.1%}")
        return 0
    run = report.Run(
        results=results,
        texts=count,
        tokens=texts.tokens,
        repeats=repeats,
        peak_gflops=peak,
        padding_waste=sorted(padding)[len(padding) // 2],
        server_rss_mib=rss,
        flops_per_token=report.flops_per_token(bundle.manifest["model"], texts.tokens / count),
        int8_parity=read_bundle(int8, verify=False).manifest["parity"].get("int8_vs_fp32", {}),
        command="make bench" if not args.quick else "python -m tests.bench --quick",
        when=time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    )
    report.write(args.out, run)
    print(report.summary(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
