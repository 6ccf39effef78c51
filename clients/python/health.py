"""The standard grpc.health.v1 Check call, without the grpcio-health-checking package.

A client-only install has grpcio and protobuf but not grpcio-health-checking, so the two tiny
messages are declared here, in a private descriptor pool that cannot clash with that package's.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

CHECK_METHOD = "/grpc.health.v1.Health/Check"
STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def _messages() -> tuple[Any, Any]:
    file = descriptor_pb2.FileDescriptorProto(
        name="atento_client/health.proto", package="grpc.health.v1", syntax="proto3"
    )
    request = file.message_type.add(name="HealthCheckRequest")
    request.field.add(name="service", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=1)
    response = file.message_type.add(name="HealthCheckResponse")
    response.field.add(name="status", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32, label=1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse")),
    )


HealthCheckRequest, HealthCheckResponse = _messages()


def status_name(response: Any) -> str:
    """A HealthCheckResponse's status, by name."""
    status: int = response.status
    return STATUS_NAMES.get(status, f"UNKNOWN({status})")
