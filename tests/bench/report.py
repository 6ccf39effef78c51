"""The benchmark's tables, written between markers in BENCHMARKS.md (the prose around them stays)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.machine import describe
from tests.bench.workloads import Measurement, median_of

START, END = "<!-- bench:start -->", "<!-- bench:end -->"

LABELS = {
    "torch_eager": "PyTorch eager, our encoder (batches of 32)",
    "sentence_transformers": "sentence-transformers `encode` (batches of 32)",
    "ort_in_process": "ONNX Runtime in process, batches of 32 in arrival order",
    "ort_in_process_sorted": "ONNX Runtime in process, batches of 32 sorted by length",
    "ort_in_process_packed": "ONNX Runtime in process, batches of 32 packed as the service packs",
    "service_32x1": "atento service: 32 clients x 1 text per call",
    "service_32x1_no_attention_graph": "atento service, attention graph not loaded: 32 x 1",
    "service_4x32": "atento service: 4 clients x 32 texts per call",
    "ort_single_text": "ONNX Runtime in process, one text at a time",
    "service_1x1": "atento service: 1 client x 1 text per call",
    "attention_none_128": "atento service: one 128-token text, no attention",
    "attention_all_128": "atento service: one 128-token text, all 6x12 attention maps",
    "int8_in_process": "int8 bundle, ONNX Runtime in process, batches of 32 packed",
    "int8_service_32x1": "int8 bundle, atento service: 32 x 1",
}


@dataclass
class Run:
    results: dict[str, list[Measurement]]
    texts: int
    tokens: int
    repeats: int
    peak_gflops: float
    padding_waste: float
    server_rss_mib: dict[str, float]
    flops_per_token: float
    int8_parity: dict[str, Any]
    command: str
    when: str

    def rate(self, name: str) -> float:
        return median_of(self.results[name], lambda m: m.texts_per_s)

    def p50(self, name: str) -> float:
        return median_of(self.results[name], lambda m: m.percentile(50))

    def gflops(self, name: str) -> float:
        return median_of(self.results[name], lambda m: m.tokens_per_s) * self.flops_per_token / 1e9


def flops_per_token(model: dict[str, Any], mean_tokens: float) -> float:
    """Useful FLOPs per real token: per layer Q, K, V, O (8·D²), the feed-forward (4·D·I) and the
    attention scores and weighted sum (4·S·D, S = the mean text length); padding not counted."""
    d, i, layers = model["hidden_size"], model["intermediate_size"], model["num_layers"]
    return float(layers * (8 * d * d + 4 * d * i + 4 * mean_tokens * d))


def targets(run: Run) -> list[tuple[str, str, str, bool, str]]:
    """(target, goal, measured, met, note)."""
    efficiency = run.rate("service_32x1") / run.rate("ort_in_process_packed")
    versus_st = run.rate("service_32x1") / run.rate("sentence_transformers")
    latency_gap = (run.p50("service_1x1") - run.p50("ort_single_text")) * 1000
    graph_cost = 1 - run.rate("service_32x1") / run.rate("service_32x1_no_attention_graph")
    attention_speed = run.p50("attention_none_128") / run.p50("attention_all_128")
    int8_speed = run.rate("int8_service_32x1") / run.rate("service_32x1")
    int8_min = run.int8_parity.get("min_cosine", float("nan"))
    int8_mean = run.int8_parity.get("mean_cosine", float("nan"))
    peak_share = max(run.gflops(name) for name in ("ort_in_process_sorted", "ort_in_process_packed")) / run.peak_gflops
    rows = [
        ("serving efficiency (32 x 1 vs in-process ORT, same packing)", ">= 0.85x (aim 0.9x)", f"{efficiency:.2f}x", efficiency >= 0.85),
        ("vs sentence-transformers (32 x 1)", ">= 2x", f"{versus_st:.2f}x", versus_st >= 2),
        ("single-text p50, service minus in-process", "<= 1 ms", f"{latency_gap:.2f} ms", latency_gap <= 1),
        ("attention graph loaded, cost to the fast path", "<= 3%", f"{graph_cost:+.1%}", graph_cost <= 0.03),
        ("all-layer attention of 128 tokens, speed vs none", ">= 0.5x", f"{attention_speed:.2f}x", attention_speed >= 0.5),
        ("int8 cosine to fp32 (parity sentences)", "min >= 0.99, mean >= 0.995", f"min {int8_min:.4f}, mean {int8_mean:.4f}", int8_min >= 0.99 and int8_mean >= 0.995),
        ("int8 throughput through the service vs fp32", ">= 2x", f"{int8_speed:.2f}x", int8_speed >= 2),
        ("fp32 encoder in process, share of matmul peak", "report; aim >= 50%", f"{peak_share:.0%}", peak_share >= 0.5),
    ]  # fmt: skip
    # How far each missed row falls short, in the row's own unit, before the profile's reason.
    shortfalls = [
        f"{0.85 - efficiency:.2f}x short",
        f"{2 - versus_st:.2f}x short",
        f"{latency_gap - 1:.2f} ms over",
        f"{graph_cost - 0.03:.1%} over",
        f"{0.5 - attention_speed:.2f}x short",
        f"min {0.99 - int8_min:+.4f}, mean {0.995 - int8_mean:+.4f} short",
        f"{2 - int8_speed:.2f}x short",
        f"{0.5 - peak_share:.0%} short",
    ]
    notes = dict(NOTES)
    in_process_vs_st = run.rate("ort_in_process_packed") / run.rate("sentence_transformers")
    notes["vs sentence-transformers (32 x 1)"] = (
        f"in process the same graph and packing run {in_process_vs_st:.2f}x sentence-transformers; "
        "what the service loses on the way is the serving-efficiency gap above"
    )
    return [
        (*row, "" if row[3] else f"{short}: {notes.get(row[0], '')}")
        for row, short in zip(rows, shortfalls, strict=True)
    ]


# Why a target is missed, from the profiles (see "What each step bought" below the tables).
NOTES: dict[str, str] = {
    "serving efficiency (32 x 1 vs in-process ORT, same packing)": (
        "the 32 clients share the server's two cores, and the machine is CPU-bound: per call the "
        "server's event loop spends ~0.8 ms of CPU (gRPC, parse, tokenise, respond) and the client "
        "~0.7 ms, so ORT's two threads get ~86% of the cores (per-thread CPU from /proc over 3 000 "
        "calls); batch size is not it (packed batches of 16 and 32 run alike in process)"
    ),
    "single-text p50, service minus in-process": (
        "the Python gRPC floor: a bare grpc.aio server whose handler is busy 4 ms answers 1.28 ms "
        "after it; our path adds ~0.8 ms (tokenise 0.3, hand-offs to and from the ORT thread 0.4, response 0.2)"
    ),
    "int8 throughput through the service vs fp32": (
        "only the feed-forward is int8 (Q/K/V/O in int8 drop the cosine to 0.98); the ORT profile: "
        "MatMulInteger is 4x faster than the fp32 MatMul it replaces, but attention (26%) and the "
        "fp32 projections (26%) stay, so kernels gain 1.46x, and gRPC overhead dilutes it further"
    ),
    "all-layer attention of 128 tokens, speed vs none": (
        "4.7 MB per response: serialising it and receiving it in the Python client cost more than the encoder"
    ),
    "attention graph loaded, cost to the fast path": "within the run-to-run noise of this VM",
    "fp32 encoder in process, share of matmul peak": "",
}


def table(run: Run) -> str:
    lines = [
        "| workload | texts/s | tokens/s | p50 ms | p99 ms | GFLOP/s | share of peak |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, measurements in run.results.items():
        rate = median_of(measurements, lambda m: m.texts_per_s)
        tokens = median_of(measurements, lambda m: m.tokens_per_s)
        gflops = tokens * run.flops_per_token / 1e9
        p50 = median_of(measurements, lambda m: m.percentile(50)) * 1000
        p99 = median_of(measurements, lambda m: m.percentile(99)) * 1000
        latency = (f"{p50:.2f}", f"{p99:.2f}") if measurements[0].latencies else ("", "")
        lines.append(
            f"| {LABELS.get(name, name)} | {rate:.1f} | {tokens:.0f} | {latency[0]} | {latency[1]} | "
            f"{gflops:.1f} | {gflops / run.peak_gflops:.0%} |"
        )
    return "\n".join(lines)


def render(run: Run) -> str:
    target_lines = ["| target | goal | measured | met | why not |", "|---|---|---|---|---|"]
    for name, goal, measured, met, note in targets(run):
        target_lines.append(f"| {name} | {goal} | {measured} | {'yes' if met else '**no**'} | {note} |")
    rss = ", ".join(f"{name} {mib:.0f} MiB" for name, mib in run.server_rss_mib.items())
    return "\n".join(
        [
            START,
            f"Run {run.when} UTC with `{run.command}`: {run.texts} sentences of *Pride and Prejudice* "
            f"({run.tokens} tokens, {run.tokens / run.texts:.1f} per text), {run.repeats} interleaved rounds, medians.",
            "",
            f"Machine: {describe()}.",
            f"Measured fp32 matmul peak: {run.peak_gflops:.0f} GFLOP/s (best square matmul of ONNX Runtime's MLAS, numpy and PyTorch, every core). "
            f"Useful work: {run.flops_per_token / 1e6:.1f} MFLOP per real token (padding not counted).",
            "",
            "### Targets",
            "",
            *target_lines,
            "",
            "### Every workload",
            "",
            table(run),
            "",
            f"Padding waste of the service's batches under 32 x 1 load: {run.padding_waste:.1%} of the padded tokens. "
            f"Peak RSS of the servers: {rss}.",
            END,
        ]
    )


def write(path: Path, run: Run) -> None:
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    path.write_text(before + render(run) + after)


def summary(run: Run) -> str:
    return "\n".join(f"{name}: {measured} ({'met' if met else 'MISSED'})" for name, _, measured, met, _ in targets(run))
