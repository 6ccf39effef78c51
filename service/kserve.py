"""The Open Inference Protocol front door: ``inference.GRPCInferenceService`` (KServe v2, Triton's
clients) beside ``atento.v1.Encoder`` on the same server, the same engine, batcher and limits.

Thin, like the Encoder servicer: tensors -> texts and options (kserve_tensors.py) -> ``Engine.embed``
-> output tensors. Every method runs inside the Encoder servicer's ``CallTracker``, so the calls are
timed and counted by method and code, refused while draining and waited for by the drain, and every
refusal goes through the one error table (errors.py). The model is served as version "1" under the
bundle's model name; another name or version is NOT_FOUND, as Triton answers an unknown model.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
from atento.inference import grpc_predict_v2_pb2 as kv

from . import kserve_tensors as tensors
from . import requests
from .budget import Hold, ResponseBudget
from .calls import CallTracker
from .config import Settings
from .engine import Engine
from .errors import InvalidArgument, NotFound, NotReady, Unimplemented
from .identity import identity
from .metrics import Metrics
from .rpc import generic_handler
from .servicer import LARGE_OUTPUT_VALUES, atento_version

T = TypeVar("T")
INFERENCE_SERVICE = kv.DESCRIPTOR.services_by_name["GRPCInferenceService"]
MODEL_VERSION = "1"
SERVER_NAME = "atento"
PLATFORM = "atento"  # not a Triton backend: text in, embeddings out, on ONNX Runtime
EXTENSIONS = ("parameters",)  # the request parameters in kserve_tensors.PARAMETERS
# Health questions have true answers while draining (live, not ready); the rest is refused then.
ANSWERED_WHILE_DRAINING = ("ServerLive", "ServerReady", "ModelReady")
TEXTS_PREFIX = 'inputs[0] "text" '  # refusals of single texts read `inputs[0] "text" texts[3]: ...`


class KServeServicer:
    """``inference.GRPCInferenceService``: one coroutine per RPC, named as the proto names it."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        calls: CallTracker,
        ready: Callable[[], Engine],
        budget: ResponseBudget,
    ) -> None:
        self.settings, self.metrics, self.calls, self.budget = settings, metrics, calls, budget
        self.ready = ready  # the engine once warm; NotReady (UNAVAILABLE) while loading

    def _engine_or_none(self) -> Engine | None:
        try:
            return None if self.calls.draining else self.ready()
        except NotReady:  # while loading: readiness questions answer False, not an error
            return None

    @staticmethod
    def _served(engine: Engine, name: str, version: str) -> bool:
        return name == engine.bundle.model.name and version in ("", MODEL_VERSION)

    def _model(self, name: str, version: str) -> Engine:
        engine = self.ready()
        if not self._served(engine, name, version):
            shown = f"{name!r}" + (f" version {version!r}" if version else "")
            raise NotFound(
                f"unknown model {shown}: this server serves {engine.bundle.model.name!r} version {MODEL_VERSION!r}"
            )
        return engine

    async def _answer(self, method: str, context: grpc.aio.ServicerContext, answer: Callable[[], T]) -> T:
        """A call answered without the engine's work: counted, timed and refused like any other."""

        async def work() -> T:
            return answer()

        return await self.calls.observe(method, context, work(), while_draining=method in ANSWERED_WHILE_DRAINING)

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> kv.ServerLiveResponse:
        return await self._answer("ServerLive", context, lambda: kv.ServerLiveResponse(live=True))

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> kv.ServerReadyResponse:
        return await self._answer(
            "ServerReady", context, lambda: kv.ServerReadyResponse(ready=self._engine_or_none() is not None)
        )

    async def ModelReady(
        self, request: kv.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> kv.ModelReadyResponse:
        def ready() -> kv.ModelReadyResponse:
            request_ = requests.well_formed(request)
            engine = self._engine_or_none()
            return kv.ModelReadyResponse(
                ready=engine is not None and self._served(engine, request_.name, request_.version)
            )

        return await self._answer("ModelReady", context, ready)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> kv.ServerMetadataResponse:
        return await self._answer(
            "ServerMetadata",
            context,
            lambda: kv.ServerMetadataResponse(name=SERVER_NAME, version=atento_version(), extensions=EXTENSIONS),
        )

    async def ModelMetadata(
        self, request: kv.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> kv.ModelMetadataResponse:
        def metadata() -> kv.ModelMetadataResponse:
            request_ = requests.well_formed(request)
            model = self._model(request_.name, request_.version).bundle.model
            inputs, outputs = tensors.tensor_metadata(model)
            return kv.ModelMetadataResponse(
                name=model.name, versions=[MODEL_VERSION], platform=PLATFORM, inputs=inputs, outputs=outputs
            )

        return await self._answer("ModelMetadata", context, metadata)

    async def _infer(
        self, request: kv.ModelInferRequest, context: grpc.aio.ServicerContext, hold: Hold
    ) -> kv.ModelInferResponse:
        request = requests.well_formed(request)
        engine = self._model(request.model_name, request.model_version)
        model = engine.bundle.model
        texts = tensors.input_texts(request, self.settings)
        requests.check_texts(texts, self.settings, TEXTS_PREFIX)
        outputs = tensors.returned_outputs(request)
        options = tensors.infer_options(request, outputs, model, engine.runtime.has_attention_maps)
        remaining = context.time_remaining()
        deadline = time.perf_counter() + remaining if remaining is not None else None
        done = await engine.embed(texts, options, deadline, TEXTS_PREFIX, hold)
        limit = self.settings.max_send_message_bytes
        if (size := tensors.padded_bytes(outputs, done.encoded, options, model)) > limit:
            # Padding to the longest text can exceed what the engine's check counted.
            raise InvalidArgument(
                "outputs",
                f"the padded outputs would take about {size >> 20} MiB, over the {limit >> 20} MiB limit: "
                "send texts of similar length, ask for fewer layers or heads, or output_datatype FP16",
            )
        start = time.perf_counter()
        build = functools.partial(tensors.output_tensors, outputs, done.encoded, done.outputs, options, done.embeddings)
        values = sum(len(e) for e in done.encoded) * model.hidden_size
        large = options.token_embeddings or options.attention_selection is not None
        built = await engine.in_thread(build) if large and values > LARGE_OUTPUT_VALUES else build()
        response = tensors.infer_response(request, model.name, MODEL_VERSION, built)
        for key, value in identity(engine.bundle, options).as_dict().items():  # what produced these vectors
            field = {bool: "bool_param", int: "int64_param", str: "string_param"}[type(value)]
            setattr(response.parameters[f"atento.{key}"], field, value)
        self.metrics.serialize_duration.observe(time.perf_counter() - start)
        return response

    async def ModelInfer(
        self, request: kv.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> kv.ModelInferResponse:
        hold = Hold(self.budget)  # the response's bytes, released once gRPC has sent it (budget.py)
        context.add_done_callback(lambda _: hold.release())
        return await self.calls.observe("ModelInfer", context, self._infer(request, context, hold))


class TritonExtensions(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Triton's own methods under the protocol's service name (ModelConfig, ModelStreamInfer, the
    repository, shared memory, statistics): a clear UNIMPLEMENTED instead of gRPC's "Method not found!"."""

    def __init__(self, calls: CallTracker) -> None:
        self.calls = calls
        self.prefix = f"/{INFERENCE_SERVICE.full_name}/"
        self.served = ", ".join(m.name for m in INFERENCE_SERVICE.methods)

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method.removeprefix(self.prefix)
        if method == details.method or method in INFERENCE_SERVICE.methods_by_name:
            return None

        async def refuse(request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
            async def work() -> None:
                raise Unimplemented(
                    f"{method} is an extension of Triton's, not part of the Open Inference Protocol; "
                    f"atento serves {self.served}"
                )

            await self.calls.observe(method, context, work())

        # Stream to stream: it answers unary and streaming callers alike, reading nothing.
        return grpc.stream_stream_rpc_method_handler(refuse)


def kserve_handlers(servicer: KServeServicer) -> tuple[grpc.GenericRpcHandler, grpc.GenericRpcHandler]:
    """The inference service's handlers, from the proto's descriptor, with lenient request parsing,
    and the clear refusal of Triton's extensions."""
    return generic_handler(INFERENCE_SERVICE, servicer), TritonExtensions(servicer.calls)
