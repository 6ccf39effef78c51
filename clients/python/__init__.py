"""atento's Python SDK: embeddings, tokens and attention maps from an atento server.

Needs only grpcio, protobuf, googleapis-common-protos (for the error details) and numpy (`pip install atento[client]`).
"""

from .aio import AsyncClient
from .client import Client
from .connection import Retry
from .errors import (
    AtentoError,
    CancelledError,
    DeadlineExceededError,
    ErrorDetails,
    FieldViolation,
    IdentityChangedError,
    InternalError,
    InvalidInputError,
    OverloadedError,
    QuotaViolation,
    ResourceInfo,
    UnauthenticatedError,
    UnavailableError,
)
from .identity import IdentityPin, VectorIdentity
from .messages import AttentionSelection, EmbedOptions
from .results import EmbedResult, Encoding, Limits, ModelInfo, Timings, Token, TokenizedText, Usage
from .similarity import similarity

# Deprecated alias: an embed call's choice of layers and heads was called `Attention` before it was
# named an attention selection. Kept so that code written against the old name still runs.
Attention = AttentionSelection

__all__ = [
    "AsyncClient",
    "AtentoError",
    "Attention",
    "AttentionSelection",
    "CancelledError",
    "Client",
    "DeadlineExceededError",
    "EmbedOptions",
    "EmbedResult",
    "Encoding",
    "ErrorDetails",
    "FieldViolation",
    "IdentityChangedError",
    "IdentityPin",
    "InternalError",
    "InvalidInputError",
    "Limits",
    "ModelInfo",
    "OverloadedError",
    "QuotaViolation",
    "ResourceInfo",
    "Retry",
    "Timings",
    "Token",
    "TokenizedText",
    "UnauthenticatedError",
    "UnavailableError",
    "Usage",
    "VectorIdentity",
    "similarity",
]
