"""The Open Inference Protocol door: tensor decoding and parameters in process, and the wire over plain grpcio.

tests/kserve drives the same door with tritonclient; these are the cases a Triton client never sends
(non-raw contents, broken raw bytes, bad datatypes and shapes) and the drain.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from atento.client import Client
from atento.inference import grpc_predict_v2_pb2 as kv
from atento.inference import grpc_predict_v2_pb2_grpc as kv_grpc
from atento.service import kserve_tensors as tensors
from atento.service.config import Settings
from atento.service.errors import AtentoError, InvalidArgument
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.servers import ServerProcess, running_server
from tests.service.test_requests import MODEL

SETTINGS = Settings()


def raw(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def request(
    *, name: str = "text", datatype: str = "BYTES", shape: tuple[int, ...] = (2,), contents: bytes | None = None
) -> kv.ModelInferRequest:
    tensor = kv.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    data = raw(b"Hello", "wörld".encode()) if contents is None else contents
    return kv.ModelInferRequest(model_name="m", inputs=[tensor], raw_input_contents=[data])


def refused(message: kv.ModelInferRequest) -> str:
    with pytest.raises(InvalidArgument) as error:
        tensors.input_texts(message, SETTINGS)
    return str(error.value)


@pytest.mark.fast
def test_raw_bytes_decode_to_texts() -> None:
    assert tensors.input_texts(request(), SETTINGS) == ["Hello", "wörld"]
    assert tensors.input_texts(request(shape=(2, 1)), SETTINGS) == ["Hello", "wörld"]


@pytest.mark.fast
def test_bad_tensors_are_refused_naming_the_tensor() -> None:
    assert refused(request(name="txt")) == 'inputs[0] "txt": unknown input, expected "text"'
    assert refused(request(datatype="FP32")) == 'inputs[0] "text": datatype "FP32", expected "BYTES"'
    assert refused(request(shape=(2, 3))).startswith('inputs[0] "text": shape [2, 3]')
    assert "hold 2 elements, its shape says 3" in refused(request(shape=(3,)))
    assert "more than the 1 elements" in refused(request(shape=(1,)))
    assert "4 bytes, 2 left" in refused(request(contents=raw(b"ab") + b"\x01\x00"))
    assert "9 bytes announced, 2 left" in refused(request(shape=(1,), contents=struct.pack("<I", 9) + b"ab"))
    assert refused(request(shape=(1,), contents=raw(b"\xff"))).startswith('inputs[0] "text"[0]: not valid UTF-8')
    too_many = SETTINGS.max_texts_per_request + 1
    assert f"{too_many} texts exceed the limit" in refused(request(shape=(too_many,)))  # before any decoding


@pytest.mark.fast
def test_outputs_follow_the_list_and_the_parameters() -> None:
    message = request()
    assert tensors.returned_outputs(message) == ("embedding",)
    message.parameters["attention"].bool_param = True
    assert tensors.returned_outputs(message) == ("embedding", "token_count", "attention")
    message.outputs.add(name="token_embeddings")
    assert tensors.returned_outputs(message) == ("token_embeddings", "attention")
    message.outputs.add(name="logits")
    with pytest.raises(InvalidArgument, match=r'outputs\[1\] "logits": unknown output'):
        tensors.returned_outputs(message)


@pytest.mark.fast
def test_parameters_of_the_wrong_type_are_refused() -> None:
    message = request()
    message.parameters["token_embeddings"].string_param = "yes"
    with pytest.raises(InvalidArgument, match=r'parameters\["token_embeddings"\]: expected a bool value, got string'):
        tensors.returned_outputs(message)


PARAMETER = st.one_of(
    st.builds(kv.InferParameter, bool_param=st.booleans()),
    st.builds(kv.InferParameter, int64_param=st.integers(-(2**63), 2**63 - 1)),
    st.builds(
        kv.InferParameter, string_param=st.sampled_from(["FP16", "FP32", "cls", "0,1", "1", "-1", "x", "", "0,0"])
    ),
    st.builds(kv.InferParameter, double_param=st.floats()),
)


@pytest.mark.fast
@settings(max_examples=300, deadline=None)
@given(
    contents=st.one_of(
        st.binary(max_size=64), st.lists(st.text(max_size=5), max_size=4).map(lambda ts: raw(*(s.encode() for s in ts)))
    ),
    shape=st.lists(st.integers(-2, 6), max_size=3),
    names=st.lists(st.sampled_from([*tensors.OUTPUTS, "other"]), max_size=3),
    parameters=st.dictionaries(st.sampled_from([*tensors.PARAMETERS, "other"]), PARAMETER, max_size=4),
)
def test_any_request_is_answered_or_refused_never_crashes(
    contents: bytes, shape: list[int], names: list[str], parameters: dict[str, kv.InferParameter]
) -> None:
    """Fuzzed contents, shapes, outputs and parameters: texts and options, or a domain error, nothing else."""
    message = request(shape=tuple(shape), contents=contents)
    message.outputs.extend(kv.ModelInferRequest.InferRequestedOutputTensor(name=name) for name in names)
    for key, value in parameters.items():
        message.parameters[key].CopyFrom(value)
    try:
        texts = tensors.input_texts(message, SETTINGS)
        outputs = tensors.returned_outputs(message)
        options = tensors.infer_options(message, outputs, MODEL, maps_available=True)
    except AtentoError:
        return
    assert len(texts) == shape[0] and set(outputs) <= set(tensors.OUTPUTS)
    assert (options.attention_selection is not None) == ("attention" in outputs)


def stub(server: ServerProcess) -> kv_grpc.GRPCInferenceServiceStub:
    return kv_grpc.GRPCInferenceServiceStub(server.channel())


def test_bytes_contents_and_raw_give_the_same_vectors(minilm_server: ServerProcess) -> None:
    texts = ["The dog runs.", "Ünïcödé text, with ✓ marks."]
    with Client(minilm_server.target) as client:
        expected = client.embed(texts).embeddings
        model = client.info().name
    tensor = kv.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[2])
    tensor.contents.bytes_contents.extend(t.encode() for t in texts)
    response = stub(minilm_server).ModelInfer(kv.ModelInferRequest(model_name=model, inputs=[tensor]), timeout=30)
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("embedding", "FP32", [2, 384])
    got = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(2, 384)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert response.model_name == model and response.model_version == "1"
    with Client(minilm_server.target) as client:  # the same vector identity as the native door's
        native = client.embed(texts).identity
    assert native is not None
    said = {key[len("atento.") :]: value for key, value in response.parameters.items()}
    assert said["bundle_sha256"].string_param == native.bundle_sha256 == client_info_sha(minilm_server)
    assert (said["dimensions"].int64_param, said["pooling"].string_param) == (native.dimensions, native.pooling)
    assert (said["precision"].string_param, said["normalized"].bool_param) == (native.precision, native.normalized)


def client_info_sha(server: ServerProcess) -> str:
    with Client(server.target) as client:
        return client.info().bundle_sha256


def test_malformed_request_bytes_are_invalid_argument(minilm_server: ServerProcess) -> None:
    with minilm_server.channel() as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as error:
            call(b"\xff\xff\xff", timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid ModelInferRequest" in str(error.value.details())


def test_draining_server_is_live_not_ready_and_refuses_inference(tiny_bundle: Path) -> None:
    with running_server(tiny_bundle, "--drain-seconds", "3", "--drain-notice-seconds", "2") as server:
        inference = stub(server)
        assert inference.ServerReady(kv.ServerReadyRequest(), timeout=5).ready
        server.process.terminate()  # SIGTERM: the notice period keeps the connection open for 2 s
        deadline = time.monotonic() + 2
        while inference.ServerReady(kv.ServerReadyRequest(), timeout=5).ready and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not inference.ServerReady(kv.ServerReadyRequest(), timeout=5).ready
        assert inference.ServerLive(kv.ServerLiveRequest(), timeout=5).live
        assert not inference.ModelReady(kv.ModelReadyRequest(name="tiny"), timeout=5).ready
        with pytest.raises(grpc.RpcError) as error:
            inference.ModelInfer(request(), timeout=5)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tritons_extensions_are_unimplemented_saying_so(minilm_server: ServerProcess) -> None:
    with minilm_server.channel() as channel:
        stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
        with pytest.raises(grpc.RpcError) as error:
            list(stream(iter([b""]), timeout=10))
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert str(error.value.details()).startswith("ModelStreamInfer is an extension of Triton's")
    assert minilm_server.metric("atento_requests_total", method="ModelStreamInfer", code="UNIMPLEMENTED") == 1
