"""gRPC plumbing read from the proto's descriptors: no service name, method or message class is
written by hand here, so a method added to the ``.proto`` is registered the moment it is implemented.

Request parsing is lenient: gRPC answers a deserializer that raises with INTERNAL, so bytes that do
not parse become a ``Malformed`` value, which the handler refuses with INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass


@dataclass(frozen=True)
class Malformed:
    """What the lenient deserializer hands over for bytes that do not parse as the request message."""

    message: str
    error: str


def lenient(message_type: type[Message]) -> Callable[[bytes], Any]:
    """A request deserializer that never raises."""

    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except DecodeError as error:
            return Malformed(message_type.DESCRIPTOR.name, str(error) or "truncated or invalid protobuf")

    return parse


def handler_kind(request_streaming: bool, response_streaming: bool) -> str:
    """``unary_unary`` .. ``stream_stream``: the suffix of grpc's ``*_rpc_method_handler`` factories."""
    return ("stream" if request_streaming else "unary") + "_" + ("stream" if response_streaming else "unary")


def method_handler(method: MethodDescriptor, behaviour: Callable[..., Any]) -> grpc.RpcMethodHandler:
    factory: Callable[..., grpc.RpcMethodHandler] = getattr(
        grpc, handler_kind(method.client_streaming, method.server_streaming) + "_rpc_method_handler"
    )
    return factory(
        behaviour,
        request_deserializer=lenient(GetMessageClass(method.input_type)),
        response_serializer=GetMessageClass(method.output_type).SerializeToString,
    )


def generic_handler(service: ServiceDescriptor, servicer: object) -> grpc.GenericRpcHandler:
    """Every method of ``service``, each served by the servicer's attribute of the same name."""
    missing = [m.name for m in service.methods if not callable(getattr(servicer, m.name, None))]
    if missing:
        raise TypeError(f"{type(servicer).__name__} does not implement {service.full_name}: {', '.join(missing)}")
    handlers = {m.name: method_handler(m, getattr(servicer, m.name)) for m in service.methods}
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def method_names(service: ServiceDescriptor) -> tuple[str, ...]:
    return tuple(m.name for m in service.methods)
