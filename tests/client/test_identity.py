"""Every EmbedResponse says what produced its vectors; IdentityPin refuses to mix two identities."""

from __future__ import annotations

import pytest
from atento.client import Client, IdentityChangedError, IdentityPin, VectorIdentity

from tests.servers import ServerProcess


def test_embed_results_carry_the_vector_identity(minilm_server: ServerProcess) -> None:
    with Client(minilm_server.target) as client:
        info = client.info()
        identity = client.embed("Mr. Darcy").identity
        assert identity == VectorIdentity(
            model="all-MiniLM-L6-v2",
            bundle_sha256=info.bundle_sha256,
            precision="fp32",
            dimensions=384,
            pooling="mean",
            normalized=True,
            prompt="",
        )
        cls = client.embed("Mr. Darcy", pooling="cls", normalize=False).identity
        assert cls is not None and (cls.pooling, cls.normalized) == ("cls", False)


def test_identity_pin_refuses_other_vectors(minilm_server: ServerProcess) -> None:
    with Client(minilm_server.target) as client:
        sha = client.info().bundle_sha256
        pin = IdentityPin(expect_bundle_sha256=sha)
        first = pin.check(client.embed("one"))
        assert pin.check(client.embed("two")).identity == first.identity == pin.identity
        with pytest.raises(IdentityChangedError, match="vector identity changed"):
            pin.check(client.embed("three", pooling="cls"))
        with pytest.raises(IdentityChangedError, match=f"expected {'0' * 12}"):
            IdentityPin(expect_bundle_sha256="0" * 64).check(client.embed("four"))
