"""The front doors side by side: the same 32 callers x 1 text, over atento.v1 Embed and over the Open
Inference Protocol's ModelInfer, against one server, in interleaved rounds (medians, ratio).

    python -m tests.bench.doors [--bundle bundles/minilm] [--texts 2000] [--repeats 3]

``kserve_load`` is a workload like those of workloads.py, for `make bench` to put beside them. It is
tritonclient-free: plain grpc.aio with atento's generated stubs, raw BYTES in, raw FP32 out, as any
protocol client sends and reads them.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from atento.inference import grpc_predict_v2_pb2 as kv
from atento.inference import grpc_predict_v2_pb2_grpc as kv_grpc
from atento.service.bundle import read_bundle

from tests.bench import workloads
from tests.bench.__main__ import corpus
from tests.bench.workloads import Measurement, Texts, Workload
from tests.conftest import ROOT
from tests.servers import running_server


def infer_request(model: str, texts: list[str]) -> kv.ModelInferRequest:
    """One ModelInfer call: input "text", BYTES [N], raw (each element a 4-byte little-endian length, then UTF-8)."""
    encoded = [text.encode() for text in texts]
    raw = b"".join(struct.pack("<I", len(data)) + data for data in encoded)
    tensor = kv.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[len(texts)])
    request = kv.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=[raw])
    request.parameters["truncate"].bool_param = True  # as the native workload's truncate=True
    return request


def kserve_load(target: str, model: str, texts: Texts, *, clients: int, per_call: int) -> Workload:
    """``clients`` concurrent ModelInfer callers, each sending ``per_call`` texts per call until all are embedded."""
    chunks = [texts.lines[i : i + per_call] for i in range(0, len(texts.lines), per_call)]

    async def drive() -> Measurement:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = kv_grpc.GRPCInferenceServiceStub(channel)
            queue = list(reversed(chunks))
            latencies: list[float] = []

            async def caller() -> None:
                while queue:
                    chunk = queue.pop()
                    began = time.perf_counter()
                    response = await stub.ModelInfer(infer_request(model, chunk), timeout=300)
                    vectors = np.frombuffer(response.raw_output_contents[0], "<f4")  # (N * D,) as a client reads it
                    latencies.append(time.perf_counter() - began)
                    assert vectors.size == len(chunk) * response.outputs[0].shape[1]

            start = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(clients)))
            # The protocol reports no token counts: the texts' own, from the same tokenizer.
            return Measurement(time.perf_counter() - start, len(texts.lines), texts.tokens, latencies)

    return lambda: asyncio.run(drive())


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m tests.bench.doors")
    cli.add_argument("--bundle", type=Path, default=ROOT / "bundles" / "minilm")
    cli.add_argument("--texts", type=int, default=2000)
    cli.add_argument("--repeats", type=int, default=3)
    args = cli.parse_args(argv)
    bundle = read_bundle(args.bundle, verify=False)
    texts = Texts(corpus(args.texts), bundle.tokenizer_file, bundle.model.max_positions)
    with running_server(args.bundle) as server:
        plan = {
            "native Embed, 32 x 1": workloads.service_load(server.target, texts, clients=32, per_call=1),
            "KServe v2 ModelInfer, 32 x 1": kserve_load(
                server.target, bundle.model.name, texts, clients=32, per_call=1
            ),
        }
        results: dict[str, list[Measurement]] = {name: [] for name in plan}
        for round_ in range(args.repeats):
            for name, workload in plan.items():
                print(f"round {round_ + 1}/{args.repeats}: {name} ...", file=sys.stderr)
                results[name].append(workload())
    rates = {name: workloads.median_of(runs, lambda m: m.texts_per_s) for name, runs in results.items()}
    p50s = {name: workloads.median_of(runs, lambda m: m.percentile(50)) for name, runs in results.items()}
    native = next(iter(rates.values()))
    print(f"{args.texts} texts, median of {args.repeats} interleaved rounds, one server ({bundle.model.name})")
    for name, rate in rates.items():
        print(f"{name:<32} {rate:8.1f} texts/s  p50 {p50s[name] * 1000:6.2f} ms  x{rate / native:.2f} of native")
    return 0


if __name__ == "__main__":
    sys.exit(main())
