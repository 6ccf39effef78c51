"""Vector identity on the client: what produced a result's vectors, and a pin that refuses a change.

During a rollout, replicas may serve different bundles (or precisions, poolings, prompts): vectors
from two of them must not be mixed in one index. ``IdentityPin`` remembers the first identity it
sees (or the bundle it is told to expect) and raises ``IdentityChangedError`` when another appears.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol, TypeVar

from atento.v1 import encoder_pb2 as pb

from .errors import IdentityChangedError


@dataclass(frozen=True)
class VectorIdentity:
    """Exactly what produced a response's vectors (the proto's ``VectorIdentity``, in its field order)."""

    bundle_sha256: str
    precision: str  # fp32, fp16 or int8
    dimensions: int
    pooling: str  # mean, cls, ... or "none"
    normalized: bool
    prompt: str
    model: str


def identity_from(message: pb.VectorIdentity) -> VectorIdentity:
    return VectorIdentity(**{field.name: getattr(message, field.name) for field in fields(VectorIdentity)})


class Identified(Protocol):
    """A result that says what produced its vectors (``EmbedResult``)."""

    @property
    def identity(self) -> VectorIdentity | None: ...


R = TypeVar("R", bound=Identified)


class IdentityPin:
    """``pin.check(result)`` returns the result while its vectors are of the pinned identity.

    With ``expect_bundle_sha256``, the first result must already come from that bundle; without it,
    the first result's identity becomes the pin."""

    def __init__(self, expect_bundle_sha256: str | None = None) -> None:
        self.expect_bundle_sha256 = expect_bundle_sha256
        self.identity: VectorIdentity | None = None

    def check(self, result: R) -> R:
        seen = result.identity
        if seen is None:
            raise IdentityChangedError("the server sent no vector identity: cannot tell which bundle made the vectors")
        if self.expect_bundle_sha256 is not None and seen.bundle_sha256 != self.expect_bundle_sha256:
            raise IdentityChangedError(
                f"vectors from bundle {seen.bundle_sha256[:12]}, expected {self.expect_bundle_sha256[:12]}"
            )
        if self.identity is None:
            self.identity = seen
        elif seen != self.identity:
            raise IdentityChangedError(f"vector identity changed from {self.identity} to {seen}")
        return result
