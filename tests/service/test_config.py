"""Settings: defaults, ATENTO_* environment, flags on top, validation, redaction."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from atento.service.config import Settings, add_flags, settings_from
from pydantic import ValidationError


def parse(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser()
    add_flags(parser)
    return settings_from(parser.parse_args(argv))


def test_defaults() -> None:
    settings = Settings()
    assert (settings.port, settings.metrics_port, settings.provider) == (50051, 9464, "auto")
    assert settings.max_receive_message_bytes == 16 << 20


def test_environment_then_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATENTO_PORT", "6000")
    monkeypatch.setenv("ATENTO_MAX_BATCH_TOKENS", "1234")
    monkeypatch.setenv("ATENTO_ATTENTION_MAPS", "false")
    settings = parse(["--port", "7000", "--bundle", "/x"])
    assert settings.port == 7000  # the flag wins
    assert settings.max_batch_tokens == 1234  # the environment fills what flags leave
    assert settings.attention_maps is False and settings.bundle == Path("/x")
    assert parse(["--attention-maps"]).attention_maps is True
    assert parse(["--no-attention"]).attention_maps is False  # the flag as earlier releases spelt it


def test_invalid_values_name_the_field() -> None:
    with pytest.raises(ValidationError, match="max_batch_size"):
        parse(["--max-batch-size", "0"])
    with pytest.raises(ValidationError, match="tls_cert and tls_key go together"):
        Settings(tls_cert=Path("cert.pem"))
    with pytest.raises(SystemExit):
        parse(["--provider", "tpu"])


def test_the_token_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATENTO_AUTH_TOKEN", "s3cret-token")
    settings = Settings()
    assert settings.auth_token is not None and settings.auth_token.get_secret_value() == "s3cret-token"
    assert "s3cret-token" not in str(settings.redacted()) and settings.redacted()["auth_token"] == "<set>"
    assert "s3cret-token" not in repr(settings)
