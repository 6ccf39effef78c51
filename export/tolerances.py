"""The parity bounds a bundle must meet, and the check that names every figure outside them."""

from __future__ import annotations

# The acceptance bounds; export refuses to write a bundle that misses any of them.
TOLERANCES = {
    "torch_vs_transformers.hidden_max_abs": 1e-4,
    "torch_vs_transformers.attention_max_abs": 1e-5,
    "torch_vs_sentence_transformers.min_cosine": 0.99999,
    "onnx_vs_torch.encoder.hidden_max_abs": 1e-4,
    "onnx_vs_torch.encoder_attn.hidden_max_abs": 1e-4,
    "onnx_vs_torch.encoder_attn.attention_max_abs": 1e-5,
    # fp16 bundles only: each fp16 graph against the fp32 encoder, pooled (mean, normalised) cosines
    "fp16_vs_fp32.encoder.min_cosine": 0.9999,
    "fp16_vs_fp32.encoder.mean_cosine": 0.99995,
    "fp16_vs_fp32.encoder_attn.min_cosine": 0.9999,
    "fp16_vs_fp32.encoder_attn.mean_cosine": 0.99995,
    # int8 bundles only: the quantised fast graph against the fp32 graph it came from
    "int8_vs_fp32.min_cosine": 0.99,
    "int8_vs_fp32.mean_cosine": 0.995,
}


class ParityError(RuntimeError):
    """A parity figure outside its tolerance."""


def flatten(figures: dict[str, object], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, int | float):
            flat[f"{prefix}{key}"] = float(value)
    return flat


def check_tolerances(figures: dict[str, object]) -> None:
    """Raise naming every figure outside its bound."""
    flat = flatten(figures)
    failures = []
    for key, bound in TOLERANCES.items():
        if key not in flat:
            continue
        value = flat[key]
        ok = value >= bound if key.endswith("cosine") else value <= bound
        if not ok:
            failures.append(f"{key} = {value:.3g} (bound {bound:g})")
    if failures:
        raise ParityError("parity failed: " + "; ".join(failures))
