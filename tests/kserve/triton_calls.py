"""Calls an atento server with tritonclient's gRPC client, as a Triton user would, and prints what it saw as JSON.

Runs in the venv of tests/kserve/requirements.txt (tritonclient needs protobuf < 7, so it cannot
share the project's venv): it imports tritonclient and numpy, never atento. The test that runs it
(test_tritonclient.py) asserts on its output.

    python tests/kserve/triton_calls.py TARGET MODEL TEXTS_JSON [--token TOKEN]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def refusal(call: Callable[[], Any]) -> dict[str, str]:
    """The status and message a call is refused with (or OK when it is not)."""
    try:
        call()
    except InferenceServerException as error:
        return {"status": str(error.status()), "message": str(error.message())}
    return {"status": "OK", "message": ""}


def text_input(texts: list[str], name: str = "text") -> triton.InferInput:
    tensor = triton.InferInput(name, [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    return tensor


def outputs_of(result: triton.InferResult) -> dict[str, dict[str, Any]]:
    seen = {}
    for output in result.get_response().outputs:
        array = result.as_numpy(output.name)
        seen[output.name] = {
            "datatype": output.datatype,
            "shape": list(output.shape),
            "numpy_dtype": str(array.dtype),
            "values": (array.astype(np.float64) if array.dtype.kind == "f" else array).tolist(),
        }
    return seen


def everything(client: triton.InferenceServerClient, model: str, texts: list[str]) -> dict[str, Any]:
    metadata = client.get_model_metadata(model)
    server = client.get_server_metadata()
    infer = client.infer
    return {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "other_model_ready": client.is_model_ready("no-such-model"),
        "server_metadata": {"name": server.name, "version": server.version, "extensions": list(server.extensions)},
        "model_metadata": {
            "name": metadata.name,
            "versions": list(metadata.versions),
            "inputs": [[t.name, t.datatype, list(t.shape)] for t in metadata.inputs],
            "outputs": [[t.name, t.datatype, list(t.shape)] for t in metadata.outputs],
        },
        "fp32": outputs_of(infer(model, [text_input(texts)], request_id="call-1")),
        "fp32_id": infer(model, [text_input(texts)], request_id="call-1").get_response().id,
        "fp16": outputs_of(infer(model, [text_input(texts)], parameters={"output_datatype": "FP16"})),
        "token_embeddings": outputs_of(infer(model, [text_input(texts)], parameters={"token_embeddings": True})),
        "requested_output": outputs_of(
            infer(model, [text_input(texts[:1])], outputs=[triton.InferRequestedOutput("token_embeddings")])
        ),
        "attention": outputs_of(
            infer(
                model,
                [text_input(texts[:1])],
                parameters={"attention": True, "attention_layers": "1", "attention_heads": "0,2"},
            )
        ),
        "wrong_tensor": refusal(lambda: infer(model, [text_input(texts, name="txt")])),
        "wrong_model": refusal(lambda: infer("no-such-model", [text_input(texts)])),
        "wrong_model_metadata": refusal(lambda: client.get_model_metadata("no-such-model")),
        "unknown_parameter": refusal(lambda: infer(model, [text_input(texts)], parameters={"pooling_mode": "max"})),
        "empty_text": refusal(lambda: infer(model, [text_input(["fine", ""])])),
        "model_config": refusal(lambda: client.get_model_config(model)),
    }


def with_token(client: triton.InferenceServerClient, model: str, texts: list[str], token: str) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"}
    return {
        "no_token_live": refusal(client.is_server_live),
        "no_token_infer": refusal(lambda: client.infer(model, [text_input(texts)])),
        "wrong_token_infer": refusal(
            lambda: client.infer(model, [text_input(texts)], headers={"authorization": "Bearer x"})
        ),
        "token_live": client.is_server_live(headers=headers),
        "token_infer": outputs_of(client.infer(model, [text_input(texts)], headers=headers)),
    }


def main() -> None:
    cli = argparse.ArgumentParser()
    cli.add_argument("target")
    cli.add_argument("model")
    cli.add_argument("texts", help="a JSON list of texts")
    cli.add_argument("--token")
    args = cli.parse_args()
    texts = json.loads(args.texts)
    with triton.InferenceServerClient(args.target) as client:
        seen = (
            with_token(client, args.model, texts, args.token) if args.token else everything(client, args.model, texts)
        )
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
