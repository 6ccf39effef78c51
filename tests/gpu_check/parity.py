"""Parity on held-out text: each bundle on CUDA against ONNX Runtime's CPU provider on the same graph
and against PyTorch (transformers, eager attention) on CUDA in the same dtype; on every machine, each
bundle on the CPU provider against PyTorch fp32 on the CPU (the CPU-only rows CI checks).

Figures: pooled (mean over real tokens, normalised) cosine, min and mean over texts; hidden states'
max |delta| over real tokens; attention maps' max |delta| over real query rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from atento.export.parity import attention_delta, hidden_delta
from atento.service.bundle import GraphRole, read_bundle
from atento.service.config import Settings
from atento.service.packing import pad_batch
from atento.service.runtime import Runtime
from atento.service.tokenizer import TextTokenizer

from tests.export.random_checkpoints import CORPUS

from .report import Row, check

BATCH = 16
# Bounds: fp32 as the exporter's (export/tolerances.py); fp16 as its manifest's pooled bounds, with
# hidden and attention bounds fp16's own rounding (10-bit mantissa, values of order 1) allows.
BOUNDS = {
    "fp32": {"min_cosine": 0.99999, "mean_cosine": 0.99999, "hidden_max_abs": 1e-3, "attention_max_abs": 1e-4},
    "fp16": {"min_cosine": 0.9999, "mean_cosine": 0.99995, "hidden_max_abs": 5e-2, "attention_max_abs": 5e-3},
}


def held_out_texts(count: int = 64) -> list[str]:
    """Lines of the novel past the part the tokenizer was trained on and the parity sentences use."""
    lines = (CORPUS / "pride_and_prejudice.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in lines[4000:] if len(line.split()) >= 3][:count]


def batches(bundle: Path, texts: list[str]) -> Iterator[dict[str, np.ndarray]]:
    """Right-padded (B, S) int64 batches of ``texts``, cut at the model's maximum."""
    model = read_bundle(bundle, verify=False).model
    tokenizer = TextTokenizer(bundle / "tokenizer.json", model.max_tokens)
    encoded = tokenizer.encode_batch(texts)
    for start in range(0, len(encoded), BATCH):
        yield pad_batch(encoded[start : start + BATCH])


def pooled(hidden: np.ndarray, real: np.ndarray) -> np.ndarray:
    """(B, S, D), (B, S) bool -> (B, D): mean over real tokens, L2-normalised."""
    weights = real[..., None].astype(np.float64)  # (B, S, 1)
    means = (hidden.astype(np.float64) * weights).sum(axis=1) / weights.sum(axis=1)
    return means / np.linalg.norm(means, axis=1, keepdims=True)


Outputs = list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # per batch: hidden, maps, real mask


def ort_outputs(bundle: Path, provider: str, texts: list[str]) -> Outputs:
    runtime = Runtime(read_bundle(bundle), Settings(bundle=bundle, provider=provider))
    found = []
    for inputs in batches(bundle, texts):
        out = runtime.run(inputs, GraphRole.ATTENTION_MAPS)
        assert out.attention_maps is not None
        found.append(
            (out.hidden.astype(np.float32), out.attention_maps.astype(np.float32), inputs["attention_mask"] > 0)
        )
    return found


def torch_outputs(checkpoint: Path, bundle: Path, device: str, dtype: str, texts: list[str]) -> Outputs:
    """transformers' model of the checkpoint, eager attention (so it returns the maps)."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(checkpoint), attn_implementation="eager").eval()
    model = model.to(device=device, dtype=torch.float16 if dtype == "fp16" else torch.float32)
    found = []
    with torch.inference_mode():
        for inputs in batches(bundle, texts):
            feeds = {name: torch.from_numpy(array).to(device) for name, array in inputs.items()}
            out = model(**feeds, output_attentions=True)
            hidden = out.last_hidden_state.float().cpu().numpy()
            maps = torch.stack(out.attentions, dim=1).float().cpu().numpy()  # L x (B, H, S, S) -> (B, L, H, S, S)
            found.append((hidden, maps, inputs["attention_mask"] > 0))
    return found


def compare(
    name: str, provider: str, dtype: str, got: Outputs, reference: Outputs, bounds: dict[str, float]
) -> list[Row]:
    cosines = np.concatenate(
        [(pooled(g[0], g[2]) * pooled(r[0], r[2])).sum(axis=1) for g, r in zip(got, reference, strict=True)]
    )
    hidden = max(hidden_delta(g[0], r[0], g[2]) for g, r in zip(got, reference, strict=True))
    maps = max(attention_delta(g[1], r[1], g[2]) for g, r in zip(got, reference, strict=True))
    figures = (
        ("pooled cosine min", float(cosines.min()), "min_cosine", True),
        ("pooled cosine mean", float(cosines.mean()), "mean_cosine", True),
        ("hidden max abs delta", hidden, "hidden_max_abs", False),
        ("attention maps max abs delta", maps, "attention_max_abs", False),
    )
    return [
        check("parity", f"{name}: {what}", provider, dtype, value, bounds[key], up) for what, value, key, up in figures
    ]


def parity_rows(checkpoint: Path, bundles: dict[str, Path], cuda: bool) -> list[Row]:
    texts = held_out_texts()
    rows: list[Row] = []
    torch_cpu = torch_outputs(checkpoint, bundles["fp32"], "cpu", "fp32", texts)
    for dtype, bundle in bundles.items():
        cpu = ort_outputs(bundle, "cpu", texts)
        rows += compare("ORT CPU vs PyTorch CPU fp32", "cpu", dtype, cpu, torch_cpu, BOUNDS[dtype])
        if not cuda:
            rows.append(Row("parity", "ORT CUDA vs ORT CPU, vs PyTorch CUDA", "cuda", dtype, "not run: no CUDA GPU"))
            continue
        on_gpu = ort_outputs(bundle, "cuda", texts)
        rows += compare("ORT CUDA vs ORT CPU (same graph)", "cuda", dtype, on_gpu, cpu, BOUNDS[dtype])
        torch_gpu = torch_outputs(checkpoint, bundle, "cuda", dtype, texts)
        rows += compare(f"ORT CUDA vs PyTorch CUDA {dtype}", "cuda", dtype, on_gpu, torch_gpu, BOUNDS[dtype])
    return rows
