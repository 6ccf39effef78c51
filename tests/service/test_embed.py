"""Embed against a real server on the MiniLM bundle, checked against the reference implementations."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from atento.export.sources import minilm_directory
from atento.v1 import encoder_pb2 as pb

from tests.servers import ServerProcess

TEXTS = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune,"
    " must be in want of a wife.",
    "Evan's dog Riley is so hyperactive, she never stops moving.",
    "Mr. Bennet replied that he had not.",
    "Café crème, naïve résumé — unicode works too.",
    "Yes",
]


def array(tensor: pb.Tensor) -> np.ndarray:
    dtype = {pb.DTYPE_FLOAT32: "<f4", pb.DTYPE_FLOAT16: "<f2"}[tensor.dtype]
    return np.frombuffer(tensor.data, dtype=dtype).reshape(tuple(tensor.shape))


@pytest.fixture(scope="module")
def reference_embeddings() -> np.ndarray:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_directory()), device="cpu")
    return model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)


def test_pooled_embeddings_match_sentence_transformers(
    minilm_server: ServerProcess, reference_embeddings: np.ndarray
) -> None:
    response = minilm_server.stub().Embed(pb.EmbedRequest(texts=TEXTS), timeout=30)
    assert len(response.results) == len(TEXTS)
    ours = np.stack([array(r.embedding) for r in response.results])
    assert ours.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)  # MiniLM's default: normalised
    cosines = np.sum(ours * reference_embeddings, axis=1)
    assert cosines.min() >= 0.99999, cosines
    assert response.usage.texts == len(TEXTS)
    assert response.usage.tokens == sum(
        len(r.tokens) for r in minilm_server.stub().Tokenize(pb.TokenizeRequest(texts=TEXTS)).results
    )
    assert response.timings.total_ns >= response.timings.inference_ns > 0
    assert response.model == "all-MiniLM-L6-v2"


def test_token_embeddings_and_offsets_slice_the_text(minilm_server: ServerProcess) -> None:
    response = minilm_server.stub().Embed(pb.EmbedRequest(texts=TEXTS[:3], token_embeddings=True), timeout=30)
    for text, result in zip(TEXTS[:3], response.results, strict=True):
        tokens = array(result.token_embeddings)
        assert tokens.shape == (len(result.tokens), 384)
        assert result.tokens[0].text == "[CLS]" and result.tokens[0].special
        assert result.tokens[-1].text == "[SEP]" and result.tokens[-1].special
        for token in result.tokens[1:-1]:
            assert not token.special
            assert text[token.start : token.end].lower() == token.text.removeprefix("##"), token
        # mean of the token embeddings, normalised, is the pooled embedding
        mean = tokens.mean(axis=0)
        np.testing.assert_allclose(mean / np.linalg.norm(mean), array(result.embedding), atol=1e-5)


def test_attention_matches_transformers(minilm_server: ServerProcess) -> None:
    from transformers import BertModel, BertTokenizerFast

    text = TEXTS[1]
    spec = pb.AttentionSpec(layers=[0, 3, 5], heads=[1, 7])
    response = minilm_server.stub().Embed(pb.EmbedRequest(texts=[text], attention=spec), timeout=30)
    result = response.results[0]
    assert list(result.attention_layers) == [0, 3, 5] and list(result.attention_heads) == [1, 7]
    ours = array(result.attention)
    assert ours.shape == (3, 2, len(result.tokens), len(result.tokens))
    np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-5)  # every row is a distribution over keys

    directory = str(minilm_directory())
    tokenizer = BertTokenizerFast.from_pretrained(directory)
    model = BertModel.from_pretrained(directory, attn_implementation="eager").eval()
    inputs = tokenizer([text], return_tensors="pt")
    assert inputs["input_ids"][0].tolist() == [t.id for t in result.tokens]
    with torch.no_grad():
        theirs = torch.stack(model(**inputs, output_attentions=True).attentions, dim=1)[0].numpy()  # (L, H, S, S)
    expected = theirs[np.ix_([0, 3, 5], [1, 7])]
    assert np.abs(ours - expected).max() <= 1e-4


def test_all_attention_and_average_heads(minilm_server: ServerProcess) -> None:
    stub = minilm_server.stub()
    full = stub.Embed(pb.EmbedRequest(texts=[TEXTS[2]], attention=pb.AttentionSpec()), timeout=30).results[0]
    everything = array(full.attention)
    assert everything.shape[:2] == (6, 12)
    assert list(full.attention_layers) == list(range(6)) and list(full.attention_heads) == list(range(12))
    averaged = stub.Embed(
        pb.EmbedRequest(texts=[TEXTS[2]], attention=pb.AttentionSpec(layers=[2], average_heads=True)), timeout=30
    ).results[0]
    mean = array(averaged.attention)
    assert mean.shape == (1, 1, *everything.shape[2:])
    np.testing.assert_allclose(mean[0, 0], everything[2].mean(axis=0), atol=1e-6)


def test_float16_is_within_1e3_of_float32(minilm_server: ServerProcess) -> None:
    """Pooled embeddings and attention (|x| <= 1) within 1e-3 absolute; unnormalised token states
    reach |x| ~ 10, where float16's own spacing is wider than 1e-3, so within 1e-3 relative there."""
    stub = minilm_server.stub()
    common = {"texts": TEXTS, "token_embeddings": True, "attention": pb.AttentionSpec(layers=[1])}
    f32 = stub.Embed(pb.EmbedRequest(**common, output_dtype=pb.DTYPE_FLOAT32), timeout=30)  # type: ignore[arg-type]
    f16 = stub.Embed(pb.EmbedRequest(**common, output_dtype=pb.DTYPE_FLOAT16), timeout=30)  # type: ignore[arg-type]
    for a, b in zip(f32.results, f16.results, strict=True):
        for field in ("embedding", "token_embeddings", "attention"):
            half, full = getattr(b, field), getattr(a, field)
            assert half.dtype == pb.DTYPE_FLOAT16 and len(half.data) * 2 == len(full.data)
            exact = array(full)
            error = np.abs(array(half).astype(np.float32) - exact)
            scale = np.maximum(1.0, np.abs(exact)) if field == "token_embeddings" else 1.0
            assert (error / scale).max() <= 1e-3, field


def test_pooling_choices(minilm_server: ServerProcess) -> None:
    stub = minilm_server.stub()
    text = [TEXTS[0]]
    tokens = array(
        stub.Embed(pb.EmbedRequest(texts=text, token_embeddings=True), timeout=30).results[0].token_embeddings
    )
    cls = stub.Embed(pb.EmbedRequest(texts=text, pooling=pb.POOLING_CLS, normalize=False), timeout=30).results[0]
    np.testing.assert_allclose(array(cls.embedding), tokens[0], atol=1e-6)
    raw_mean = stub.Embed(pb.EmbedRequest(texts=text, pooling=pb.POOLING_MEAN, normalize=False), timeout=30).results[0]
    np.testing.assert_allclose(array(raw_mean.embedding), tokens.mean(axis=0), atol=1e-5)
    none = stub.Embed(pb.EmbedRequest(texts=text, pooling=pb.POOLING_NONE, token_embeddings=True), timeout=30).results[
        0
    ]
    assert not none.HasField("embedding") and none.HasField("token_embeddings")


def test_concurrent_single_text_calls_share_batches_and_match_sequential(minilm_server: ServerProcess) -> None:
    stub = minilm_server.stub()
    texts = [f"{sentence} (variant {i})" for i, sentence in enumerate(TEXTS * 13)][:64]
    sequential = [array(stub.Embed(pb.EmbedRequest(texts=[t]), timeout=30).results[0].embedding) for t in texts]
    batches_before = minilm_server.metric("atento_batch_size_count", graph="encoder")
    texts_before = minilm_server.metric("atento_batch_size_sum", graph="encoder")
    with ThreadPoolExecutor(64) as pool:
        responses = list(pool.map(lambda t: stub.Embed(pb.EmbedRequest(texts=[t]), timeout=60), texts))
    concurrent = [array(r.results[0].embedding) for r in responses]
    for one, other in zip(sequential, concurrent, strict=True):
        np.testing.assert_allclose(one, other, atol=1e-5)
    batches = minilm_server.metric("atento_batch_size_count", graph="encoder") - batches_before
    assert minilm_server.metric("atento_batch_size_sum", graph="encoder") - texts_before == 64
    assert batches < 64, f"64 concurrent calls ran in {batches} batches: none shared a batch"
    shared = minilm_server.metric("atento_batch_size_bucket", graph="encoder", le="1.0")
    assert minilm_server.metric("atento_batch_size_count", graph="encoder") > shared  # some batch held more than one
