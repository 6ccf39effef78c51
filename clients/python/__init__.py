"""atento's Python SDK: embeddings, tokens and attention weights from an atento server.

Needs only grpcio, protobuf and numpy (`pip install atento[client]`).
"""

from .aio import AsyncClient
from .client import Client
from .connection import Retry
from .errors import (
    AtentoError,
    CancelledError,
    DeadlineExceededError,
    InternalError,
    InvalidInputError,
    OverloadedError,
    UnauthenticatedError,
    UnavailableError,
)
from .messages import Attention
from .results import EmbedResult, Encoding, Limits, ModelInfo, Timings, Token, TokenizedText, Usage
from .similarity import similarity

__all__ = [
    "AsyncClient",
    "AtentoError",
    "Attention",
    "CancelledError",
    "Client",
    "DeadlineExceededError",
    "EmbedResult",
    "Encoding",
    "InternalError",
    "InvalidInputError",
    "Limits",
    "ModelInfo",
    "OverloadedError",
    "Retry",
    "Timings",
    "Token",
    "TokenizedText",
    "UnauthenticatedError",
    "UnavailableError",
    "Usage",
    "similarity",
]
