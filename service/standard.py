"""The standard gRPC services beside ``atento.v1.Encoder``: health (with ``List``) and reflection
under both of its names.

grpcio-health-checking's asyncio servicer answers ``Health/List`` with UNIMPLEMENTED (and logs an
ERROR traceback): ``Health`` below implements it from the statuses the server set.

grpcio-reflection ships only ``grpc.reflection.v1alpha``; newer tools (grpcurl 1.9+, Postman,
grpcui) ask ``grpc.reflection.v1`` first. The two protocols are the same messages under another
package, so the v1 descriptor is derived from v1alpha's at start-up (package renamed, nothing copied
by hand) and the same servicer answers under both full names, with v1alpha's message classes: the
bytes on the wire are identical.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection, reflection_pb2

REFLECTION_V1ALPHA = reflection.SERVICE_NAME
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REFLECTION_V1_FILE = "grpc/reflection/v1/reflection.proto"


class Health(HealthServicer):  # type: ignore[misc]
    """grpc.health.v1.Health with ``List``: every service the server set a status for."""

    async def List(  # noqa: N802 (the RPC's name)
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthListResponse:
        statuses = {name: health_pb2.HealthCheckResponse(status=status) for name, status in self._server_status.items()}
        return health_pb2.HealthListResponse(statuses=statuses)


def _renamed(type_name: str, old: str, new: str) -> str:
    prefix = f".{old}."
    return f".{new}.{type_name[len(prefix) :]}" if type_name.startswith(prefix) else type_name


def reflection_v1_file(pool: descriptor_pool.DescriptorPool | None = None) -> FileDescriptor:
    """``grpc/reflection/v1/reflection.proto``, built from v1alpha's descriptor and added to ``pool``
    (the default pool, where reflection looks symbols up), once."""
    pool = pool or descriptor_pool.Default()
    try:
        return pool.FindFileByName(REFLECTION_V1_FILE)
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = proto.package, "grpc.reflection.v1"
    proto.name, proto.package = REFLECTION_V1_FILE, new
    proto.ClearField("options")  # v1alpha's language options name v1alpha packages
    for message in proto.message_type:  # reflection.proto has no nested messages
        for field in message.field:
            if field.HasField("type_name"):  # message and enum fields only: a scalar must not have one
                field.type_name = _renamed(field.type_name, old, new)
    for service in proto.service:
        for method in service.method:
            method.input_type = _renamed(method.input_type, old, new)
            method.output_type = _renamed(method.output_type, old, new)
    return pool.AddSerializedFile(proto.SerializeToString())


class MethodResolvingReflection(reflection.aio.ReflectionServicer):  # type: ignore[misc]
    """Reflection that also finds the file of a method's name (``atento.v1.Encoder.Embed``).

    protobuf's upb descriptor pool resolves messages, fields and services but not methods, so
    ``grpcurl describe atento.v1.Encoder.Embed`` got "Symbol not found": a method's file is its service's.
    """

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        service, _, method = fully_qualified_name.rpartition(".")
        try:
            self._pool.FindFileContainingSymbol(fully_qualified_name)
        except KeyError:
            with contextlib.suppress(KeyError):
                if method in self._pool.FindServiceByName(service).methods_by_name:
                    fully_qualified_name = service
        return super()._file_containing_symbol(request, fully_qualified_name)


def add_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> tuple[str, ...]:
    """Serve reflection as v1alpha and v1, listing ``service_names`` and both reflection services."""
    reflection_v1_file()
    names = (*service_names, REFLECTION_V1ALPHA, REFLECTION_V1)
    servicer = MethodResolvingReflection(names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": handler}) for name in names[-2:]]
    )
    return names
