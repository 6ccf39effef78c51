"""A gRPC client that sends one call and never reads: hand-written HTTP/2 frames on a raw socket.

gRPC's own clients always read what arrives, so a client that does not read has to be built
below them. This one announces an initial stream window of 0 bytes, so the server may send the
response's headers but not one byte of its message, and it never reads the socket: the response
stays on the server, exactly as with a client that has stopped reading. ``read_all`` then opens
the windows and reads the call to its end, for tests that check what happens once it is read.
"""

from __future__ import annotations

import socket
import struct

from google.protobuf.message import Message

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, WINDOW_UPDATE = 0x0, 0x1, 0x4, 0x8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
INITIAL_WINDOW_SIZE = 0x4
STREAM = 1
MAX_WINDOW = (1 << 31) - 1


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream) + payload


def _integer(value: int, prefix_bits: int = 7) -> bytes:
    """HPACK's prefixed integer (RFC 7541 5.1), with the first byte's flags left 0."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out, value = bytearray([limit]), value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _literal(name: str, value: str) -> bytes:
    """A header as a literal without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    out = b"\x00"
    for text in (name.encode(), value.encode()):
        out += _integer(len(text)) + text
    return out


class NonReadingCall:
    """One unary call sent on its own connection; nothing is read until ``read_all``."""

    def __init__(self, host: str, port: int, method: str, request: Message, timeout_s: float = 60) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        headers = b"".join(
            _literal(name, value)
            for name, value in (
                (":method", "POST"),
                (":scheme", "http"),
                (":path", method),
                (":authority", f"{host}:{port}"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("grpc-timeout", f"{int(timeout_s * 1000)}m"),
            )
        )
        body = request.SerializeToString()
        message = b"\x00" + struct.pack(">I", len(body)) + body
        self.sock.sendall(
            PREFACE
            + frame(SETTINGS, 0, 0, struct.pack(">HI", INITIAL_WINDOW_SIZE, 0))
            + frame(SETTINGS, ACK, 0, b"")  # the server's SETTINGS: acknowledged unseen
            + frame(HEADERS, END_HEADERS, STREAM, headers)
            + b"".join(frame(DATA, 0, STREAM, message[i : i + 16384]) for i in range(0, len(message), 16384))
            + frame(DATA, END_STREAM, STREAM, b"")
        )

    def read_all(self, limit_s: float = 60) -> int:
        """Open both windows wide and read until the call's trailers arrive; the message bytes received."""
        grow = struct.pack(">I", MAX_WINDOW - 65535)
        self.sock.sendall(
            frame(SETTINGS, 0, 0, struct.pack(">HI", INITIAL_WINDOW_SIZE, MAX_WINDOW))
            + frame(WINDOW_UPDATE, 0, 0, grow)
        )
        self.sock.settimeout(limit_s)
        received = 0
        while True:
            length, kind, flags, stream = _frame_header(self._exactly(9))
            self._exactly(length)
            if kind == DATA and stream == STREAM:
                received += length
            if kind == HEADERS and stream == STREAM and flags & END_STREAM:
                return received

    def _exactly(self, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            chunk = self.sock.recv(size - len(out))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            out += chunk
        return bytes(out)

    def close(self) -> None:
        self.sock.close()


def _frame_header(header: bytes) -> tuple[int, int, int, int]:
    """length, type, flags, stream of a frame's 9-byte header."""
    length = int.from_bytes(header[:3], "big")
    kind, flags, stream = struct.unpack(">BBI", header[3:])
    return length, kind, flags, stream & MAX_WINDOW
