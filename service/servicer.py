"""The Encoder gRPC servicer: thin. Proto -> options -> engine (tokens, batcher) -> proto.

Every method runs inside ``CallTracker.observe`` (calls.py), which times it, counts it by status
code, and maps domain errors to their status through the one table in errors.py. The handlers are
registered from the proto's descriptor (rpc.py), not from a hand-written method list.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator
from importlib import metadata
from typing import Any

import grpc
from atento.v1 import encoder_pb2 as pb

from . import requests, responses
from .admission import bulk_requested
from .budget import Hold, ResponseBudget, StreamShare, budget_bytes, container_memory_limit
from .calls import CallLimits, CallTracker
from .config import Settings
from .engine import Engine
from .errors import NotReady
from .identity import VectorIdentity, identity
from .metrics import Metrics
from .rpc import generic_handler
from .streaming import in_order

ENCODER_SERVICE = pb.DESCRIPTOR.services_by_name["Encoder"]
POOLING_ENUM: dict[str, pb.Pooling] = {
    "mean": pb.POOLING_MEAN,
    "cls": pb.POOLING_CLS,
    "max": pb.POOLING_MAX,
    "mean_sqrt_len_tokens": pb.POOLING_MEAN_SQRT_LEN,
    "weightedmean": pb.POOLING_WEIGHTED_MEAN,
    "lasttoken": pb.POOLING_LAST_TOKEN,
}
# Responses this large are built in a thread, not on the event loop.
LARGE_OUTPUT_VALUES = 1 << 16
# One stream may hold this part of the response-bytes budget before it reads no further request.
STREAM_SHARE = 8


def identity_message(vectors: VectorIdentity) -> pb.VectorIdentity:
    return pb.VectorIdentity(**vectors.as_dict())  # the same field names, by design (identity.py)


@functools.cache  # importlib.metadata parses the package's METADATA: over a millisecond a call
def atento_version() -> str:
    try:
        return metadata.version("atento")
    except metadata.PackageNotFoundError:
        return "unknown"


class EncoderServicer:
    """``atento.v1.Encoder``: one coroutine per RPC of the proto, named as the proto names it."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings, self.metrics = settings, metrics
        retry_after_s = settings.retry_after_min_ms / 1000
        limits = CallLimits(settings.max_concurrent_rpcs, settings.max_open_streams, retry_after_s)
        self.calls = CallTracker(metrics, limits)
        capacity = budget_bytes(settings.max_unsent_response_mib, container_memory_limit())
        self.budget = ResponseBudget(capacity, retry_after_s, metrics)
        self.engine: Engine | None = None  # set when warm; None while loading
        self.info: pb.ModelInfo | None = None  # the same for the server's whole life: built once

    def ready(self) -> Engine:
        if self.engine is None:
            raise NotReady("the model is still loading; retry shortly", reason="MODEL_LOADING")
        return self.engine

    async def _embed(
        self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext, hold: Hold, prefix: str = ""
    ) -> pb.EmbedResponse:
        received = time.perf_counter()
        request = requests.well_formed(request, prefix.removesuffix(".") or "request")
        engine = self.ready()
        model = engine.bundle.model
        options = requests.embed_options(request, model, self.settings, engine.runtime.has_attention_maps, prefix)
        remaining = context.time_remaining()
        deadline = time.perf_counter() + remaining if remaining is not None else None
        bulk = bulk_requested(request.bulk, context.invocation_metadata())
        done = await engine.embed(request.texts, options, deadline, prefix, hold, bulk=bulk)
        start = time.perf_counter()
        build = functools.partial(
            responses.embed_response, model.name, done.encoded, done.outputs, options, done.tokenize_s, done.embeddings
        )
        large = options.token_embeddings or options.attention_selection is not None
        with engine.tracer.span("respond"):
            if large and sum(len(e) for e in done.encoded) * model.hidden_size > LARGE_OUTPUT_VALUES:
                response = await engine.in_thread(build)
            else:
                response = build()
        response.identity.CopyFrom(identity_message(identity(engine.bundle, options)))
        self.metrics.serialize_duration.observe(time.perf_counter() - start)
        response.timings.total_ns = int((time.perf_counter() - received) * 1e9)
        return response

    async def Embed(self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        hold = Hold(self.budget)
        # Returning hands the response to gRPC core, which keeps it until the client's HTTP/2 window
        # takes it; the call is done only once the status, which follows the message, has gone.
        context.add_done_callback(lambda _: hold.release())
        return await self.calls.observe("Embed", context, self._embed(request, context, hold))

    def _track(self, task: asyncio.Task[Any]) -> None:
        """Count a task the stream created until it ends (atento_stream_tasks), so leaks show."""
        self.metrics.stream_tasks.inc()
        task.add_done_callback(lambda _: self.metrics.stream_tasks.dec())

    async def EmbedStream(
        self, request_iterator: AsyncIterator[pb.EmbedRequest], context: grpc.aio.ServicerContext
    ) -> None:
        """Up to ``stream_window`` requests in flight, and at most its share of the response-bytes
        budget unsent; responses leave in request order (streaming.py)."""
        share = StreamShare(self.budget, self.budget.capacity // STREAM_SHARE)

        async def handle(index: int, request: pb.EmbedRequest) -> tuple[Hold, pb.EmbedResponse]:
            hold = share.hold()
            try:
                return hold, await self._embed(request, context, hold, f"requests[{index}].")
            except BaseException:
                hold.release()
                raise

        async def stream() -> None:
            s = self.settings
            ordered = in_order(
                request_iterator,
                handle,
                s.stream_window,
                self._track,
                idle_s=s.stream_idle_timeout_s,
                stop=self.calls.drain_started,
                room=share.room,
            )
            try:
                async with contextlib.aclosing(ordered) as responses_in_order:  # closed now, not whenever GC runs
                    async for hold, response in responses_in_order:
                        await context.write(response)  # returns once the client's window took it
                        hold.release()
            finally:
                share.close()  # what was computed and never sent

        await self.calls.observe("EmbedStream", context, stream(), stream=True)

    async def Tokenize(self, request: pb.TokenizeRequest, context: grpc.aio.ServicerContext) -> pb.TokenizeResponse:
        async def tokenize() -> pb.TokenizeResponse:
            requests.well_formed(request)
            engine = self.ready()
            requests.check_texts(request.texts, self.settings)
            cut = requests.check_truncation(request.truncation, "truncation")
            encoded, _ = await engine.tokenize(request.texts)
            requests.check_lengths(encoded, cut, engine.tokenizer.max_tokens)
            return pb.TokenizeResponse(results=[responses.tokenized(e) for e in encoded])

        return await self.calls.observe("Tokenize", context, tokenize())

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        async def info() -> pb.ModelInfo:
            engine = self.ready()
            if self.info is None:
                self.info = self.model_info(engine)
            return self.info

        return await self.calls.observe("GetModelInfo", context, info())

    def model_info(self, engine: Engine) -> pb.ModelInfo:
        s, model = self.settings, engine.bundle.model
        return pb.ModelInfo(
            name=model.name,
            hidden_size=model.hidden_size,
            num_layers=model.num_layers,
            num_heads=model.num_heads,
            max_tokens=engine.tokenizer.max_tokens,
            limits=pb.Limits(
                max_texts_per_request=s.max_texts_per_request,
                max_chars_per_text=s.max_chars_per_text,
                max_batch_tokens=s.max_batch_tokens,
                max_batch_size=s.max_batch_size,
                max_queued_texts=s.max_queued_texts,
                max_receive_message_bytes=s.max_receive_message_bytes,
                max_send_message_bytes=s.max_send_message_bytes,
            ),
            provider=engine.runtime.provider,
            bundle_sha256=engine.bundle.sha256,
            atento_version=atento_version(),
            default_pooling=POOLING_ENUM[model.pooling],
            default_normalize=model.normalize,
            attention_available=engine.runtime.has_attention_maps,
            precision=engine.bundle.precision,
            prompts=model.prompt_texts,
            default_prompt_name=model.default_prompt_name or "",
            embedding_size=model.output_size,
        )


def rpc_handlers(servicer: EncoderServicer) -> grpc.GenericRpcHandler:
    """The Encoder service's handlers, from the proto's descriptor, with lenient request parsing."""
    return generic_handler(ENCODER_SERVICE, servicer)
