"""What each protocol costs: 32 concurrent callers x 1 text, over native gRPC, KServe v2 gRPC and
OpenAI-compatible HTTP, side by side.

    python -m tests.bench.front_doors [--bundle bundles/minilm] [--callers 32] [--calls 1500] [--rounds 3]

The texts are the main benchmark's (tests/bench: lines of the corpus), one per call.

One server serves the three doors. Rounds interleave them (grpc, kserve, http, grpc, ...), so drift
on a shared machine hits all alike; each door's figure is the median of its rounds, in texts/s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc
from atento.inference import grpc_predict_v2_pb2_grpc as kv_grpc
from atento.service.bundle import read_bundle
from atento.v1 import encoder_pb2 as pb
from atento.v1 import encoder_pb2_grpc as pb_grpc

from tests.bench.__main__ import corpus
from tests.bench.doors import infer_request
from tests.servers import ServerProcess, running_server

Call = Callable[[str], Awaitable[None]]


async def run_callers(call: Call, texts: list[str], callers: int, calls: int) -> float:
    """``callers`` tasks each send one text at a time until ``calls`` calls are done; texts per second."""
    next_call = iter(range(calls))

    async def caller() -> None:
        for i in next_call:
            await call(texts[i % len(texts)])

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return calls / (time.perf_counter() - start)


async def http_round(server: ServerProcess, texts: list[str], callers: int, calls: int) -> float:
    connector = aiohttp.TCPConnector(limit=callers)
    async with aiohttp.ClientSession(connector=connector) as session:
        url = f"{server.http_url}/v1/embeddings"

        async def call(text: str) -> None:
            async with session.post(url, json={"input": text}) as response:
                response.raise_for_status()
                await response.read()

        return await run_callers(call, texts, callers, calls)


async def grpc_round(server: ServerProcess, texts: list[str], callers: int, calls: int) -> float:
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.EncoderStub(channel)  # type: ignore[no-untyped-call]

        async def call(text: str) -> None:
            await stub.Embed(pb.EmbedRequest(texts=[text]), timeout=60)

        return await run_callers(call, texts, callers, calls)


async def kserve_round(server: ServerProcess, model: str, texts: list[str], callers: int, calls: int) -> float:
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = kv_grpc.GRPCInferenceServiceStub(channel)

        async def call(text: str) -> None:
            await stub.ModelInfer(infer_request(model, [text]), timeout=60)

        return await run_callers(call, texts, callers, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("bundles/minilm"))
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--calls", type=int, default=1500, help="calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--max-chars", type=int, default=600, help="cut texts to this many characters (OpenAI's API cannot truncate)"
    )
    args = parser.parse_args()
    texts = [text[: args.max_chars or None] for text in corpus(512)]
    model = read_bundle(args.bundle, verify=False).model.name
    doors = {
        "gRPC `Embed`": lambda server, calls: grpc_round(server, texts, args.callers, calls),
        "KServe v2 `ModelInfer`": lambda server, calls: kserve_round(server, model, texts, args.callers, calls),
        "OpenAI HTTP `/v1/embeddings`": lambda server, calls: http_round(server, texts, args.callers, calls),
    }
    results: dict[str, list[float]] = {door: [] for door in doors}
    with running_server(args.bundle, "--http-port", "0") as server:
        for door in doors.values():  # warm every path and its connections
            asyncio.run(door(server, 200))
        for _ in range(args.rounds):
            for name, door in doors.items():
                results[name].append(asyncio.run(door(server, args.calls)))
    medians = {door: statistics.median(rounds) for door, rounds in results.items()}
    native = medians["gRPC `Embed`"]
    print(f"{args.callers} callers x 1 text, {args.calls} calls a round, median of {args.rounds} interleaved rounds")
    print("| front door | texts/s | vs gRPC `Embed` |\n|---|---|---|")
    for door, rate in medians.items():
        print(f"| {door} | {rate:.0f} | {rate / native:.2f} |")
    print("rounds:", {door: [round(r) for r in rounds] for door, rounds in results.items()})


if __name__ == "__main__":
    main()
