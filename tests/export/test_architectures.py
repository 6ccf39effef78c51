"""Every architecture end to end, on small random checkpoints built offline (random_checkpoints.py):
export parity with transformers, the served embedding against sentence-transformers (a short text
and one past the model's maximum, cut), and character offsets on multilingual text."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from atento.export.checkpoint import load_encoder, open_checkpoint
from atento.export.config import MODEL_TYPES
from atento.export.parity import ParityRun
from atento.export.sentences import parity_sentences
from atento.v1 import encoder_pb2 as pb
from tokenizers import decoders

from tests.conftest import export_bundle
from tests.export.conftest import ArchitectureBundle
from tests.export.random_checkpoints import CASES, CORPUS, MAX_TOKENS, TokenizerKind, write_checkpoint
from tests.servers import ServerProcess

BANCO = "O banco do jardim fica perto do banco onde levantei dinheiro."
MULTILINGUAL = [
    BANCO,
    "Café crème, naïve résumé: ação, coração e pão à beira-mar.",
    "Ça va? Très bien, obrigado!",
    "Emoji 🙂 and 😀👍🏽, olá🙂mundo.",
    "It is a truth universally acknowledged, that a single man",
]
# A paragraph of the novel far longer than the models' 64 tokens.
LONG = next(line for line in (CORPUS / "pride_and_prejudice.txt").read_text().splitlines() if len(line.split()) > 120)


def array(tensor: pb.Tensor) -> np.ndarray:
    return np.frombuffer(tensor.data, dtype="<f4").reshape(tuple(tensor.shape))


def test_export_parity_and_manifest(architecture: ArchitectureBundle) -> None:
    manifest = architecture.manifest
    case = architecture.case
    assert manifest["model"]["architecture"] == MODEL_TYPES[case.model_type].value
    assert manifest["model"]["model_type"] == case.model_type
    assert manifest["model"]["max_positions"] == MAX_TOKENS  # RoBERTa/MPNet: table rows past padding_idx
    parity = manifest["parity"]
    assert parity["max_tokens_seen"] == MAX_TOKENS  # parity reached the model's maximum
    assert parity["torch_vs_transformers"]["hidden_max_abs"] <= 1e-4
    assert parity["torch_vs_transformers"]["attention_max_abs"] <= 1e-5
    assert parity["onnx_vs_torch"]["encoder_attn"]["attention_max_abs"] <= 1e-5
    has_types = case.config.get("type_vocab_size", 2) != 1 and case.model_type not in ("distilbert", "mpnet")
    for graph in manifest["graphs"].values():
        assert ("token_type_ids" in graph["inputs"]) == has_types


def test_served_embeddings_match_sentence_transformers(
    architecture: ArchitectureBundle, architecture_server: ServerProcess
) -> None:
    from sentence_transformers import SentenceTransformer

    texts = [BANCO, LONG]
    request = pb.EmbedRequest(texts=texts, truncation=pb.TRUNCATION_CUT)
    response = architecture_server.stub().Embed(request, timeout=30)
    assert [result.truncated for result in response.results] == [False, True]
    ours = np.stack([array(result.embedding) for result in response.results])
    reference = SentenceTransformer(str(architecture.checkpoint), device="cpu")
    theirs = reference.encode(texts, convert_to_numpy=True)  # the directory ends in Normalize
    cosines = np.sum(ours * theirs, axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosines.min() >= 0.99999, cosines


def token_surface(kind: TokenizerKind, pieces: Sequence[str]) -> str:
    """What tokens stand for in the text, their space markers as the space they mark."""
    if kind.name == "bpe":
        return str(decoders.ByteLevel().decode(list(pieces)))  # "Ġ" -> " ", bytes -> characters
    if kind.name == "unigram":
        return "".join(pieces).replace("▁", " ")
    return "".join(piece.removeprefix("##") for piece in pieces)


def spans(tokens: Sequence[pb.Token]) -> Iterator[tuple[int, int, list[str]]]:
    """Non-special tokens grouped by offsets: byte-level BPE splits one character over several tokens."""
    group: tuple[int, int, list[str]] | None = None
    for token in tokens:
        if token.special:
            continue
        if group is not None and (group[0], group[1]) == (token.start, token.end):
            group[2].append(token.text)
            continue
        if group is not None:
            yield group
        group = (token.start, token.end, [token.text])
    if group is not None:
        yield group


def test_offsets_slice_multilingual_text(architecture: ArchitectureBundle, architecture_server: ServerProcess) -> None:
    """Offsets are code points into the request text, equal transformers' own, and each slice is
    the token's surface (leading-space markers aside): Portuguese, accents and emoji included."""
    from transformers import AutoTokenizer

    kind = architecture.case.tokenizer
    reference = AutoTokenizer.from_pretrained(str(architecture.checkpoint))
    response = architecture_server.stub().Tokenize(pb.TokenizeRequest(texts=MULTILINGUAL), timeout=30)
    for text, result in zip(MULTILINGUAL, response.results, strict=True):
        expected = reference(text, return_offsets_mapping=True)
        assert [token.id for token in result.tokens] == expected["input_ids"]
        assert [(token.start, token.end) for token in result.tokens] == [tuple(o) for o in expected["offset_mapping"]]
        covered = []
        for start, end, pieces in spans(result.tokens):
            piece = text[start:end]
            if pieces == [kind.unk]:
                assert piece.strip() == piece != "", (text, start, end)  # one unknown word, no spaces
            else:
                assert piece.lstrip(" ") == token_surface(kind, pieces).lstrip(" "), (text, pieces, piece)
            covered.append(piece)
        assert "".join(covered).replace(" ", "") == text.replace(" ", "")  # every character, once, in order
    tokens, first = response.results[0].tokens, BANCO.index("banco")
    bench, bank = (
        [t.id for t in tokens if not t.special and t.start < start + 5 and t.end > start]
        for start in (first, BANCO.index("banco", first + 1))
    )
    assert bench == bank and bench  # both "banco"s, the bench and the bank, are the same tokens


def test_camembert_is_xlm_roberta_in_disguise(tmp_path: Path) -> None:
    """camembert loads through the same equations; parity with transformers' CamembertModel."""
    checkpoint = open_checkpoint(write_checkpoint(CASES["camembert"], tmp_path / "camembert"))
    assert checkpoint.config.model_type == "camembert" and checkpoint.config.position_offset == 2
    figures = ParityRun(checkpoint, load_encoder(checkpoint), parity_sentences()[:24]).against_transformers()
    assert figures["hidden_max_abs"] <= 1e-4 and figures["attention_max_abs"] <= 1e-5, figures


@pytest.mark.parametrize("model_type", ["gpt2", "t5", "deberta-v2"])
def test_unsupported_model_type_is_one_line(tmp_path: Path, model_type: str) -> None:
    directory = tmp_path / model_type
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": model_type, "hidden_size": 32}))
    for name in ("model.safetensors", "tokenizer.json"):
        (directory / name).write_bytes(b"")  # never read: the config is refused first
    result = export_bundle(str(directory), tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"python -m atento.export: error: model_type {model_type!r} is not supported "
        "(supported: bert, camembert, distilbert, electra, mpnet, roberta, xlm-roberta)"
    ]
    assert not (tmp_path / "out").exists()
