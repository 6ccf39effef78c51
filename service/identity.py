"""Vector identity: exactly what produced a response's vectors, for every front door alike.

Two vectors are comparable only when they come from the same bundle, computed in the same
precision, pooled the same way, to the same length, after the same prompt. Every protocol (the
atento.v1 servicer, and the KServe and OpenAI doors) reports this one value, each in its own shape,
so a client can refuse to mix vectors during a rollout. Plain Python: no protobuf here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .bundle import Bundle
from .requests import EmbedOptions

NO_POOLING = "none"


@dataclass(frozen=True)
class VectorIdentity:
    model: str
    bundle_sha256: str  # the manifest's hash: identifies every file of the bundle
    precision: str  # fp32, fp16 or int8: what the serving graph computes in
    dimensions: int  # the length of each vector
    pooling: str  # mean, cls, ... or "none" when the response has no pooled embedding
    normalized: bool
    prompt: str  # the text put before every input; "" for none

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def identity(bundle: Bundle, options: EmbedOptions) -> VectorIdentity:
    """The identity of the vectors ``options`` asks ``bundle`` for."""
    return VectorIdentity(
        model=bundle.model.name,
        bundle_sha256=bundle.sha256,
        precision=str(bundle.precision),
        dimensions=options.dimensions or bundle.model.output_size,
        pooling=options.pooling or NO_POOLING,
        normalized=options.normalize and options.pooling is not None,
        prompt=options.prompt,
    )
