"""Embedding adapters for RAG frameworks, over atento's gRPC client: one line to use atento there.

    from atento.client.integrations.langchain import AtentoEmbeddings    # pip install 'atento[langchain]'
    from atento.client.integrations.llamaindex import AtentoEmbedding    # pip install 'atento[llamaindex]'

Each adapter lives in its own module and imports its framework only when that module is imported:
``import atento.client`` never imports this package, and this package imports neither framework
until one of the names below is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

_ADAPTERS = {"AtentoEmbeddings": "langchain", "AtentoEmbedding": "llamaindex"}
__all__ = list(_ADAPTERS)


def __getattr__(name: str) -> Any:
    if name not in _ADAPTERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_ADAPTERS[name]}"), name)
