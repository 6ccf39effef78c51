"""The server's one configuration object: defaults, then ATENTO_* environment, then command-line flags.

Every field is a flag of `atento serve` (`max_batch_tokens` -> `--max-batch-tokens`) and an
environment variable (`ATENTO_MAX_BATCH_TOKENS`); flags win. Validated once, at start.
"""

from __future__ import annotations

import argparse
import enum
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT = 50051
DEFAULT_METRICS_PORT = 9464
MIB = 1 << 20


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATENTO_", frozen=True, extra="forbid")

    # What to serve, and where.
    bundle: Path = Field(Path("bundles/minilm"), description="bundle directory (manifest.json, graphs, tokenizer)")
    host: str = Field("127.0.0.1", description="address to listen on for gRPC ('0.0.0.0' or '[::]' for all)")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="gRPC port (0 picks a free one)")
    metrics_host: str = Field("127.0.0.1", description="address for the Prometheus /metrics endpoint")
    metrics_port: int = Field(DEFAULT_METRICS_PORT, ge=0, le=65535, description="Prometheus port (0 picks a free one)")
    http_host: str = Field("127.0.0.1", description="address for the OpenAI-compatible HTTP API (with --http-port)")
    http_port: int | None = Field(
        None, ge=0, le=65535, description="port of the OpenAI-compatible HTTP API (/v1/embeddings); unset = off"
    )
    http_idle_timeout_s: float = Field(
        15.0, gt=0, description="HTTP ports (API and metrics): close a connection with no complete request this long"
    )
    verify_bundle: bool = Field(True, description="check every bundle file's sha256 at start")

    # ONNX Runtime.
    provider: Literal["auto", "cpu", "cuda"] = Field("auto", description="execution provider; auto = cuda if usable")
    intra_op_threads: int = Field(0, ge=0, description="threads inside one operator; 0 = ONNX Runtime's default")
    inter_op_threads: int = Field(0, ge=0, description="threads across operators; 0 = ONNX Runtime's default")
    graph_optimization: Literal["disabled", "basic", "extended", "all"] = Field(
        "all", description="ORT graph optimisation"
    )
    spin: bool = Field(True, description="let ORT's idle threads spin-wait: half the latency of small batches")
    attention_maps: bool = Field(
        True, description="load the attention-maps graph (encoder_attn.onnx) so requests may ask for attention maps"
    )

    # Batching: one queue between the RPCs and ONNX Runtime.
    max_batch_tokens: int = Field(8192, ge=1, description="tokens per batch (texts are packed several to a row)")
    max_batch_size: int = Field(64, ge=1, description="texts per batch")
    row_tokens: int = Field(64, ge=1, description="how wide packed rows are (a longer text widens its batch)")
    inference_workers: int = Field(1, ge=1, description="batches run at once (each on intra_op_threads threads)")
    max_wait_ms: float = Field(0.0, ge=0, description="how long an idle batcher waits for more texts; 0 = none")
    max_attention_batch_mib: int = Field(256, ge=1, description="attention maps computed per batch, in MiB")
    max_queued_texts: int = Field(4096, ge=1, description="texts waiting for a batch; past it: RESOURCE_EXHAUSTED")
    max_queued_tokens: int = Field(
        0,
        ge=0,
        description="tokens waiting for a batch, counted before tokenising by an upper bound; past it: "
        "RESOURCE_EXHAUSTED; 0 = 16 batches or two full requests at the model's maximum, the larger",
    )
    bulk_queue_share: float = Field(
        0.5, gt=0, le=1, description="share of the queue bulk requests may hold (interactive ones may use it all)"
    )
    retry_after_min_ms: int = Field(100, ge=1, description="the least retry hint sent with RESOURCE_EXHAUSTED")

    # Per-request limits, enforced before any work.
    max_texts_per_request: int = Field(256, ge=1, description="texts in one EmbedRequest")
    max_chars_per_text: int = Field(20000, ge=1, description="characters in one text")
    max_receive_message_mib: int = Field(16, ge=1, description="largest request message, in MiB")
    max_send_message_mib: int = Field(64, ge=1, description="largest response message, in MiB")
    max_concurrent_rpcs: int = Field(
        0, ge=0, description="Encoder calls at once (not health, reflection); past it: RESOURCE_EXHAUSTED; 0 = no bound"
    )
    stream_window: int = Field(8, ge=1, description="requests of one EmbedStream worked on at once")
    max_open_streams: int = Field(64, ge=1, description="EmbedStreams open at once; past it: RESOURCE_EXHAUSTED")
    stream_idle_timeout_s: float = Field(
        60.0, ge=0, description="end an EmbedStream with no request and none in flight this long; 0 = never"
    )
    max_unsent_response_mib: int = Field(
        0, ge=0, description="response MiB computed but not yet sent; 0 = 1/4 of the container's memory limit, else 512"
    )

    # Lifecycle.
    drain_seconds: float = Field(30.0, ge=0, description="on SIGTERM, how long in-flight calls may take to finish")
    drain_notice_seconds: float = Field(
        1.0, ge=0, description="on SIGTERM, how long health says NOT_SERVING before connections close (within drain)"
    )
    max_connection_age_s: float = Field(
        0.0, ge=0, description="close connections this old so clients re-resolve and find new replicas; 0 = never"
    )

    # Security.
    tls_cert: Path | None = Field(None, description="PEM certificate chain: enables TLS")
    tls_key: Path | None = Field(None, description="PEM private key for --tls-cert")
    tls_client_ca: Path | None = Field(None, description="PEM CA bundle: requires client certificates (mutual TLS)")
    auth_token: SecretStr | None = Field(None, description="bearer token every call must carry")
    auth_exempt_health: bool = Field(True, description="health and reflection stay open without the token (probes)")

    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    log_format: Literal["text", "json"] = Field("text", description="log lines as text, or one JSON object per line")
    log_interval_s: float = Field(
        1.0, gt=0, description="per-request warnings (queue full, ...): at most one line per interval, with a count"
    )

    # Tracing (the `tracing` extra): OpenTelemetry spans of every call, exported by OTLP.
    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/gRPC endpoint for traces (http://collector:4317); also OTEL_EXPORTER_OTLP_ENDPOINT; "
        "unset and that unset = no tracing",
    )

    @model_validator(mode="after")
    def _tls_pairs(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        return self

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> Settings:
        if self.max_queued_texts < self.max_texts_per_request:
            raise ValueError(
                f"max_queued_texts ({self.max_queued_texts}) is smaller than max_texts_per_request "
                f"({self.max_texts_per_request}): a full-sized request could never be queued"
            )
        return self

    def queued_tokens_bound(self, model_max_tokens: int) -> int:
        """``max_queued_tokens``, or its default: room for 16 batches, or for two requests of
        ``max_texts_per_request`` texts at the model's maximum if that is more."""
        room = max(16 * self.max_batch_tokens, 2 * self.max_texts_per_request * model_max_tokens)
        return self.max_queued_tokens or room

    @property
    def max_receive_message_bytes(self) -> int:
        return self.max_receive_message_mib * MIB

    @property
    def max_send_message_bytes(self) -> int:
        return self.max_send_message_mib * MIB

    def redacted(self) -> dict[str, Any]:
        """The settings as logged: secrets shown only as set or not."""
        values = self.model_dump(mode="json")
        values["auth_token"] = "<set>" if self.auth_token is not None else None
        return values


def _flag_type(annotation: Any) -> tuple[Any, dict[str, Any]]:
    """argparse type and extras for one field's annotation."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is Literal:
        return str, {"choices": list(get_args(annotation))}
    if annotation is bool:
        return None, {"action": argparse.BooleanOptionalAction}
    if args and annotation not in (int, float, str, Path):
        return _flag_type(args[0])
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return str, {"choices": [m.value for m in annotation]}
    if annotation is SecretStr:
        return str, {}
    return annotation, {}


# Flags as earlier releases spelt them, still accepted so existing scripts keep working.
FORMER_FLAGS = {"attention_maps": ("--attention",)}


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per settings field; unset flags leave the environment and defaults in charge."""
    for name, field in Settings.model_fields.items():
        kind, extras = _flag_type(field.annotation)
        if kind is not None:
            extras["type"] = kind
        default = field.default.get_secret_value() if isinstance(field.default, SecretStr) else field.default
        shown = "<unset>" if name == "auth_token" else default
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            *FORMER_FLAGS.get(name, ()),
            dest=name,
            default=argparse.SUPPRESS,
            help=f"{field.description} (env ATENTO_{name.upper()}, default {shown})",
            **extras,
        )


def settings_from(args: argparse.Namespace | None = None, **overrides: Any) -> Settings:
    """Settings from the environment with the parsed flags (and any overrides) on top."""
    flags = dict(vars(args)) if args is not None else {}
    return Settings(**{**{k: v for k, v in flags.items() if k in Settings.model_fields}, **overrides})


def markdown_table() -> str:
    """The settings as the README documents them (a test keeps the README in step)."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if default is None:
            default = "unset"
        elif isinstance(default, bool):
            default = str(default).lower()
        rows.append(f"| `--{name.replace('_', '-')}` | `ATENTO_{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(rows)
