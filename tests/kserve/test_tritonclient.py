"""The Open Inference Protocol, spoken by tritonclient (the reference client) to a real atento server.

tritonclient needs protobuf < 7, so it runs in the venv `make kserve-client` builds (make test does),
in a subprocess (triton_calls.py) that prints what it saw; this side compares that with atento's
own client on the same server.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from atento.client import AttentionSelection, Client

from tests.conftest import ROOT
from tests.servers import ServerProcess, running_server

PYTHON = ROOT / ".venv-kserve" / "bin" / "python"
SCRIPT = ROOT / "tests" / "kserve" / "triton_calls.py"
TEXTS = ["The dog runs.", "A puppy is running in the park, happily.", "Stocks fell sharply on Monday."]
TOKEN = "kserve-test-token"


def triton_calls(target: str, model: str, *extra: str) -> dict[str, Any]:
    assert PYTHON.exists(), f"{PYTHON} is missing: run `make kserve-client` (make test does)"
    result = subprocess.run(
        [str(PYTHON), str(SCRIPT), target, model, json.dumps(TEXTS), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen: dict[str, Any] = json.loads(result.stdout)
    return seen


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.fixture(scope="module")
def seen(minilm_server: ServerProcess) -> dict[str, Any]:
    with Client(minilm_server.target) as client:
        model = client.info().name
    return {"model": model, **triton_calls(minilm_server.target, model)}


def test_health_and_metadata(seen: dict[str, Any], minilm_server: ServerProcess) -> None:
    assert seen["live"] and seen["ready"] and seen["model_ready"]
    assert seen["other_model_ready"] is False
    assert seen["server_metadata"]["name"] == "atento" and seen["server_metadata"]["version"]
    metadata = seen["model_metadata"]
    assert metadata["name"] == seen["model"] and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [["text", "BYTES", [-1]]]
    outputs = {name: (datatype, shape) for name, datatype, shape in metadata["outputs"]}
    assert outputs["embedding"] == ("FP32", [-1, 384]) and outputs["token_embeddings"] == ("FP32", [-1, -1, 384])
    assert set(outputs) == {"embedding", "token_embeddings", "token_count", "attention"}
    # counted like every other call, by method and code
    assert minilm_server.metric("atento_requests_total", method="ModelInfer", code="OK") >= 5
    assert minilm_server.metric("atento_requests_total", method="ModelInfer", code="INVALID_ARGUMENT") >= 1


def test_embeddings_equal_the_sdk(seen: dict[str, Any], minilm_server: ServerProcess) -> None:
    with Client(minilm_server.target) as client:
        expected = client.embed(TEXTS).embeddings
    fp32 = seen["fp32"]
    assert list(fp32) == ["embedding"] and fp32["embedding"]["datatype"] == "FP32"
    assert fp32["embedding"]["shape"] == [3, 384] and fp32["embedding"]["numpy_dtype"] == "float32"
    assert cosines(np.array(fp32["embedding"]["values"]), expected).min() >= 0.99999
    assert seen["fp32_id"] == "call-1"

    fp16 = seen["fp16"]["embedding"]
    assert fp16["datatype"] == "FP16" and fp16["numpy_dtype"] == "float16" and fp16["shape"] == [3, 384]
    assert cosines(np.array(fp16["values"]), expected).min() >= 0.9999
    assert np.abs(np.array(fp16["values"]) - expected).max() < 1e-3  # float16 rounding, no more


def test_token_embeddings_and_attention_through_parameters(seen: dict[str, Any], minilm_server: ServerProcess) -> None:
    with Client(minilm_server.target) as client:
        sdk = client.embed(TEXTS, token_embeddings=True)
        maps = client.embed(TEXTS[0], attention=AttentionSelection(layers=[1], heads=[0, 2])).results[0].attention_maps
    got = seen["token_embeddings"]
    assert list(got) == ["embedding", "token_embeddings", "token_count"]
    counts = got["token_count"]["values"]
    assert got["token_count"]["datatype"] == "INT32" and counts == [len(r.tokens) for r in sdk.results]
    tokens = np.array(got["token_embeddings"]["values"])
    assert tokens.shape == (3, max(counts), 384)
    for i, result in enumerate(sdk.results):
        assert result.token_embeddings is not None
        np.testing.assert_allclose(tokens[i, : counts[i]], result.token_embeddings, atol=1e-5)
        assert not tokens[i, counts[i] :].any()  # zero padding past the text's tokens

    assert list(seen["requested_output"]) == ["token_embeddings"]  # only what the request listed

    attention = seen["attention"]
    assert list(attention) == ["embedding", "token_count", "attention"]
    assert maps is not None and attention["attention"]["shape"] == [1, 1, 2, *maps.shape[2:]]
    np.testing.assert_allclose(np.array(attention["attention"]["values"])[0], maps, atol=1e-6)


def test_refusals_name_the_tensor_or_parameter(seen: dict[str, Any]) -> None:
    assert seen["wrong_tensor"] == {
        "status": "StatusCode.INVALID_ARGUMENT",
        "message": 'inputs[0] "txt": unknown input, expected "text"',
    }
    for call in ("wrong_model", "wrong_model_metadata"):
        assert seen[call]["status"] == "StatusCode.NOT_FOUND" and "'no-such-model'" in seen[call]["message"]
    assert seen["unknown_parameter"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert seen["unknown_parameter"]["message"].startswith('parameters["pooling_mode"]: unknown parameter')
    assert seen["empty_text"] == {
        "status": "StatusCode.INVALID_ARGUMENT",
        "message": 'inputs[0] "text" texts[1]: must not be empty',
    }
    assert seen["model_config"]["status"] == "StatusCode.UNIMPLEMENTED"  # Triton's extension, not the protocol's
    assert seen["model_config"]["message"].startswith("ModelConfig is an extension of Triton's")


def test_the_token_is_required_when_the_server_has_one(tiny_bundle: Path) -> None:
    with running_server(tiny_bundle, env={"ATENTO_AUTH_TOKEN": TOKEN}) as server:
        seen = triton_calls(server.target, "tiny", "--token", TOKEN)
    for call in ("no_token_live", "no_token_infer", "wrong_token_infer"):
        assert seen[call]["status"] == "StatusCode.UNAUTHENTICATED", call
    assert seen["token_live"] is True
    assert seen["token_infer"]["embedding"]["shape"][0] == len(TEXTS)


def test_readme_triton_example_runs(minilm_server: ServerProcess) -> None:
    readme = (ROOT / "README.md").read_text()
    code = readme.split("<!-- triton-example -->", 1)[1].split("```", 2)[1].split("\n", 1)[1]
    assert PYTHON.exists(), f"{PYTHON} is missing: run `make kserve-client` (make test does)"
    result = subprocess.run(
        [str(PYTHON), "-c", code.replace("127.0.0.1:50051", minilm_server.target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = result.stdout.strip().splitlines()
    assert first == "(2, 384) [6 7]" and second == "(2, 7, 384)"  # what the README's comments say
