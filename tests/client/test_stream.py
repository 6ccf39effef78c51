"""embed_stream over 20 000 texts: results in order, client memory bounded (measured)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.servers import ServerProcess

# Run in its own process so the measurement is the client's alone: peak RSS after 2 000 texts and
# after 20 000 more, and how far the input was ever read ahead of the results.
CLIENT = textwrap.dedent(
    """
    import json, resource, sys
    from atento.client import Client

    def run(count):
        read = {"produced": 0, "consumed": 0, "ahead": 0}

        def texts():
            for i in range(count):
                read["produced"] += 1
                yield f"sentence number {i}"

        with Client(sys.argv[1]) as client:
            for i, encoding in enumerate(client.embed_stream(texts(), batch_size=64, tokens=True)):
                digits = "".join(t.text.removeprefix("##") for t in encoding.tokens if not t.special)
                assert digits == f"sentencenumber{i}", (i, digits)  # in input order
                read["consumed"] += 1
                read["ahead"] = max(read["ahead"], read["produced"] - read["consumed"])
        return read, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    _, small = run(2000)
    read, large = run(20000)
    print(json.dumps({"small_kib": small, "large_kib": large, **read}))
    """
)


def test_20000_texts_in_order_with_bounded_memory(minilm_server: ServerProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, minilm_server.target], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["consumed"] == 20000
    # the input is never read more than the in-flight window ahead: 8 requests of 64, plus one filling
    assert figures["ahead"] <= 64 * 10, figures
    # ten times the texts, yet the peak grows by less than what holding the results would take (~40 MB)
    growth_mib = (figures["large_kib"] - figures["small_kib"]) / 1024
    assert growth_mib < 16, figures
