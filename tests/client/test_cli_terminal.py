"""The command line as a person meets it: --version, a progress bar only on a terminal (through a real
pty), results streamed line by line with blank lines reported, and a target that never answers."""

from __future__ import annotations

import fcntl
import json
import os
import struct
import subprocess
import termios
import threading
import time
from importlib import metadata
from pathlib import Path

from tests.client.test_cli import ATENTO, atento
from tests.servers import ServerProcess
from tests.service.test_metrics import free_port


def test_version_prints_the_installed_version() -> None:
    assert atento("--version").stdout.strip() == f"atento {metadata.version('atento')}"


def test_a_target_with_no_server_says_so_after_a_second_and_fails_at_the_deadline() -> None:
    target = f"127.0.0.1:{free_port()}"  # bound, then closed: nothing listens there
    began = time.monotonic()
    process = subprocess.Popen(
        [ATENTO, "embed", "a text", "--target", target, "--timeout", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    said: list[tuple[float, str]] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            said.append((time.monotonic() - began, line.rstrip("\n")))

    reader = threading.Thread(target=read)
    reader.start()
    code = process.wait(timeout=60)
    ended = time.monotonic() - began
    reader.join()
    assert code == 1
    (notice_at, notice), (_, failure) = said
    assert notice == f"waiting for {target}…"
    assert 0.9 <= notice_at <= 3.0, notice_at  # after a second of silence, well before the deadline
    assert failure == f"atento embed: error: no server ready at {target} within the deadline of 4 s (--timeout): " + (
        "DEADLINE_EXCEEDED"
    )
    assert 3.9 <= ended <= 12, ended


def test_a_ready_server_gets_no_notice(minilm_server: ServerProcess) -> None:
    result = atento("bench", "--requests", "60", "--concurrency", "2", target=minilm_server.target)
    assert "waiting for" not in result.stderr
    assert "\r" not in result.stderr and "request/s" not in result.stderr  # no bar: stderr is a pipe


def write_lines(path: Path) -> Path:
    path.write_text("first text\n\n  \nsecond text\nthird text\n\n")
    return path


def test_embed_file_streams_one_json_line_per_text_and_reports_blank_lines(
    minilm_server: ServerProcess, tmp_path: Path
) -> None:
    texts = write_lines(tmp_path / "texts.txt")
    result = atento("embed", "-f", str(texts), "--batch", "2", target=minilm_server.target)
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["line"] for p in printed] == [1, 4, 5]
    assert all(len(p["embedding"]) == 384 for p in printed)
    assert result.stderr.splitlines() == [f"atento embed: {texts}: skipped 3 blank lines: 2, 3, 6"]
    alone = json.loads(atento("embed", "second text", target=minilm_server.target).stdout)["embeddings"][0]
    assert max(abs(a - b) for a, b in zip(alone, printed[1]["embedding"], strict=True)) < 1e-5

    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n")
    refused = atento("embed", "-f", str(blank), target=minilm_server.target, check=False)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == f"atento embed: error: no texts in {blank}: every line is blank"


def run_on_a_terminal(*args: str, target: str, stdout: Path) -> tuple[int, str, str]:
    """Run `atento` with stderr on a real pseudo-terminal and stdout to a file: (code, stdout, terminal)."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100 x 24 terminal
    env = {"PATH": os.environ["PATH"], "ATENTO_TARGET": target}
    with stdout.open("wb") as out:  # a file, not a pipe: nothing blocks the command while the pty is read
        process = subprocess.Popen([ATENTO, *args], stdout=out, stderr=follower, env=env)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the terminal's last writer has gone
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    return process.wait(timeout=60), stdout.read_text(), seen.decode(errors="replace")


def test_progress_bar_only_on_a_terminal(minilm_server: ServerProcess, tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"line number {i}\n" for i in range(200)))
    code, out, terminal = run_on_a_terminal(
        "embed", "-f", str(texts), "--batch", "8", target=minilm_server.target, stdout=tmp_path / "out.jsonl"
    )
    assert code == 0, terminal
    assert len(out.splitlines()) == 200  # the results on stdout, unmixed with the bar
    assert "\r" in terminal and "200/200" in terminal and "line/s" in terminal, terminal
    piped = atento("embed", "-f", str(texts), "--batch", "8", target=minilm_server.target)
    assert piped.stderr == ""  # the same command with stderr on a pipe: no bar at all
