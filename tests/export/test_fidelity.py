"""The sentence-transformers directory is the specification: atento's vectors equal SentenceTransformer.encode.

Two small directories around the tiny random BERT (tests/st_directories.py), exported by the real
exporter and served by a real server:
- ``rich``: weightedmean pooling without the prompt (include_prompt false), two Dense modules (GELU,
  then Identity without bias), Normalize, prompts with a default, do_lower_case over a cased
  tokenizer, max_seq_length 32;
- ``plain``: CLS pooling (an export that used to fail its parity check), nothing after it, no prompt.
Every pooling mode is asked per request on both, against the reference with that mode set.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from atento.export.parity import quiet_references
from atento.v1 import encoder_pb2 as pb

from tests.conftest import export_bundle
from tests.servers import ServerProcess, running_server
from tests.st_directories import Dense, Layout, tiny_checkpoint, write_directory

TEXTS = [
    "The Bench by the river was empty.",
    "o banco fechou às três da tarde",
    "Quantum entanglement links particles across space.",
    "short",
    "a much longer text that keeps going well past the token limit of the rich model, "
    "so that cutting it at thirty-two tokens changes what the encoder sees and pools",
]
RICH = Layout(
    pooling="weightedmean",
    include_prompt=False,
    dense=(Dense(16, "torch.nn.modules.activation.GELU"), Dense(8, "torch.nn.modules.linear.Identity", bias=False)),
    normalize=True,
    prompts={"query": "query: ", "passage": "passage: "},
    default_prompt_name="query",
    do_lower_case=True,
    max_seq_length=32,
    case_sensitive_tokenizer=True,
)
PLAIN = Layout(pooling={"pooling_mode_cls_token": True})
MODES = {
    "cls": pb.POOLING_CLS,
    "mean": pb.POOLING_MEAN,
    "max": pb.POOLING_MAX,
    "mean_sqrt_len_tokens": pb.POOLING_MEAN_SQRT_LEN,
    "weightedmean": pb.POOLING_WEIGHTED_MEAN,
    "lasttoken": pb.POOLING_LAST_TOKEN,
}


RIVER_WORDS = "the bench by the river was empty when the bank opened at nine and nobody came"


class Served:
    """One exported directory: its server and the sentence-transformers reference."""

    def __init__(self, directory: Path, server: ServerProcess) -> None:
        quiet_references()
        from sentence_transformers import SentenceTransformer

        self.directory, self.server = directory, server
        self.reference = SentenceTransformer(str(directory), device="cpu")

    def ours(self, texts: list[str] = TEXTS, **fields: Any) -> np.ndarray:
        fields.setdefault("truncation", pb.TRUNCATION_CUT)
        response = self.server.stub().Embed(pb.EmbedRequest(texts=texts, **fields), timeout=60)
        tensors = [r.embedding for r in response.results]
        return np.stack([np.frombuffer(t.data, "<f4").reshape(tuple(t.shape)) for t in tensors])

    def theirs(self, texts: list[str] = TEXTS, mode: str | None = None, **options: Any) -> np.ndarray:
        pooling = self.reference[1]
        declared = pooling.pooling_mode
        pooling.pooling_mode = mode or declared
        try:
            result: np.ndarray = self.reference.encode(texts, convert_to_numpy=True, **options)
        finally:
            pooling.pooling_mode = declared
        return result


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return result


def assert_same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    assert cosines(ours, theirs).min() >= 0.99999, cosines(ours, theirs)
    np.testing.assert_allclose(ours, theirs, atol=2e-4 * float(np.abs(theirs).max()))


@pytest.fixture(scope="module")
def directories(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("st-directories")
    checkpoint = tiny_checkpoint(base / "checkpoint")
    return {
        name: write_directory(base / name, checkpoint, layout) for name, layout in (("rich", RICH), ("plain", PLAIN))
    }


def _served(directories: dict[str, Path], name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    out = tmp_path_factory.mktemp(f"bundle-{name}") / name
    result = export_bundle(str(directories[name]), out)
    assert result.returncode == 0, result.stderr
    with running_server(out) as server:
        yield Served(directories[name], server)


@pytest.fixture(scope="module")
def rich(directories: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _served(directories, "rich", tmp_path_factory)


@pytest.fixture(scope="module")
def plain(directories: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _served(directories, "plain", tmp_path_factory)


@pytest.mark.parametrize("mode", MODES)
def test_every_pooling_mode_equals_sentence_transformers(plain: Served, rich: Served, mode: str) -> None:
    assert_same(plain.ours(pooling=MODES[mode]), plain.theirs(mode=mode))
    # include_prompt false, the default prompt, Dense modules and Normalize around the same mode
    assert_same(rich.ours(pooling=MODES[mode]), rich.theirs(mode=mode))


def test_the_declared_modules_are_the_default(plain: Served, rich: Served) -> None:
    assert_same(plain.ours(), plain.theirs())  # CLS, no Normalize: the vectors are not unit length
    assert not np.allclose(np.linalg.norm(plain.ours(), axis=1), 1.0, atol=1e-3)
    assert_same(rich.ours(), rich.theirs())  # Dense(GELU), Dense(Identity, no bias), Normalize
    assert rich.ours().shape == (len(TEXTS), 8)
    np.testing.assert_allclose(np.linalg.norm(rich.ours(), axis=1), 1.0, atol=1e-6)
    assert cosines(rich.ours(normalize=False), rich.theirs()).min() >= 0.99999  # the request may drop Normalize
    assert not np.allclose(np.linalg.norm(rich.ours(normalize=False), axis=1), 1.0, atol=1e-3)


def test_prompts_by_name_as_text_default_and_none(plain: Served, rich: Served) -> None:
    assert_same(rich.ours(prompt_name="passage"), rich.theirs(prompt_name="passage"))
    assert_same(rich.ours(prompt="instruct: find the bench "), rich.theirs(prompt="instruct: find the bench "))
    assert_same(rich.ours(prompt=""), rich.theirs(prompt=""))
    assert_same(rich.ours(), rich.theirs(prompt_name="query"))  # the default prompt
    assert cosines(rich.ours(), rich.ours(prompt="")).min() < 0.9999  # ... which does change the vector
    assert_same(plain.ours(prompt="query: "), plain.theirs(prompt="query: "))  # include_prompt true


def test_unknown_prompt_name_is_refused_naming_the_known_ones(rich: Served) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        rich.ours(prompt_name="document")
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "prompt_name" in str(refused.value.details()) and "'query', 'passage'" in str(refused.value.details())


def test_matryoshka_dimensions(plain: Served, rich: Served) -> None:
    ours = rich.ours(dimensions=5)
    assert ours.shape == (len(TEXTS), 5)
    np.testing.assert_allclose(ours, rich.theirs(truncate_dim=5, normalize_embeddings=True), atol=1e-5)
    np.testing.assert_allclose(plain.ours(dimensions=7), plain.theirs(truncate_dim=7), atol=2e-5)
    for bad in (9, -1):
        with pytest.raises(grpc.RpcError) as refused:
            rich.ours(dimensions=bad)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "dimensions" in str(refused.value.details())


def test_do_lower_case_is_applied(rich: Served) -> None:
    upper = ["THE BENCH BY THE RIVER", "Quantum Entanglement"]
    assert_same(rich.ours(upper), rich.theirs(upper))
    np.testing.assert_allclose(rich.ours(upper), rich.ours([t.lower() for t in upper]), atol=1e-6)


def test_max_seq_length_is_the_limit(rich: Served) -> None:
    info = rich.server.stub().GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert (info.max_tokens, info.embedding_size, info.default_prompt_name) == (32, 8, "query")
    assert dict(info.prompts) == {"query": "query: ", "passage": "passage: "}
    assert info.default_pooling == pb.POOLING_WEIGHTED_MEAN
    with pytest.raises(grpc.RpcError) as refused:
        rich.ours(TEXTS[-1:], truncation=pb.TRUNCATION_ERROR)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "texts[0]" in str(refused.value.details()) and "maximum of 32 tokens" in str(refused.value.details())


def test_prompt_tokens_are_marked_and_offsets_point_into_the_text(rich: Served) -> None:
    response = rich.server.stub().Embed(pb.EmbedRequest(texts=["Bench"], return_tokens=True), timeout=10)
    tokens = response.results[0].tokens
    assert [t.text for t in tokens] == ["[CLS]", "query", ":", "bench", "[SEP]"]
    assert [t.special for t in tokens] == [True, True, True, False, True]
    assert (tokens[3].start, tokens[3].end) == (0, 5)


def test_minilm_cuts_at_its_max_seq_length_of_256(minilm_server: ServerProcess, minilm_bundle: Path) -> None:
    """The issue's case: a 469-token text. Cut, it equals sentence-transformers; uncut, it is refused."""
    from atento.export.sources import minilm_directory
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    words = RIVER_WORDS.split(" ")
    text = " ".join(words[i % len(words)] for i in range(467))
    assert len(Tokenizer.from_file(str(minilm_bundle / "tokenizer.json")).encode(text).ids) == 469
    stub = minilm_server.stub()
    response = stub.Embed(pb.EmbedRequest(texts=[text], truncation=pb.TRUNCATION_CUT, return_tokens=True), timeout=60)
    result = response.results[0]
    assert result.truncated and len(result.tokens) == 256
    ours = np.frombuffer(result.embedding.data, "<f4")[None, :]
    quiet_references()
    reference = SentenceTransformer(str(minilm_directory()), device="cpu")
    assert cosines(ours, reference.encode([text]))[0] >= 0.99999
    reference.max_seq_length = 512  # what atento answered before: the whole text, a different vector
    assert cosines(ours, reference.encode([text]))[0] < 0.99
    with pytest.raises(grpc.RpcError) as refused:
        stub.Embed(pb.EmbedRequest(texts=[text]), timeout=60)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "texts[0]: longer than the model's maximum of 256 tokens" in str(refused.value.details())
    assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).max_tokens == 256
