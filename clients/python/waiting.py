"""The command line's notice while no server is ready: silence for a second, then one line on stderr.

Calls wait for a ready server until their deadline (gRPC's wait-for-ready), which is right for a
server that restarts but looks like a hang when the target is wrong. So a command watches its own
channel's connectivity and, if it has not been READY after ``after_s``, says what it waits for.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import grpc

from .connection import Connection
from .errors import DeadlineExceededError, UnavailableError

NOTICE_AFTER_S = 1.0


def notice(connection: Connection) -> str:
    return f"waiting for {','.join(connection.targets)}…"


class NoServerError(ConnectionError):
    """A command's deadline passed without any server ready at its targets."""


@contextmanager
def waiting_notice(
    connection: Connection, *, after_s: float = NOTICE_AFTER_S, stream: TextIO | None = None
) -> Iterator[None]:
    """Print ``waiting for TARGET…`` once, if no ready connection exists ``after_s`` after entering;
    a call that then fails for want of a server raises NoServerError, which says so in one line."""
    credentials = connection.credentials()
    target, options = connection.channel_target, connection.options()  # the calls' own settings: same readiness
    if credentials is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        channel = grpc.secure_channel(target, credentials, options=options)
    ready, finished = threading.Event(), threading.Event()

    def seen(state: grpc.ChannelConnectivity) -> None:
        if state is grpc.ChannelConnectivity.READY:
            ready.set()

    def watch() -> None:
        if not finished.wait(after_s) and not ready.is_set():
            print(notice(connection), file=stream or sys.stderr, flush=True)

    channel.subscribe(seen, try_to_connect=True)
    watcher = threading.Thread(target=watch, name="atento-waiting-notice", daemon=True)
    watcher.start()
    try:
        yield
    except (DeadlineExceededError, UnavailableError) as error:
        if ready.is_set():
            raise
        waited = f"within the deadline of {connection.timeout:g} s (--timeout)" if connection.timeout else "yet"
        code = error.code.name if error.code else "ERROR"
        raise NoServerError(f"no server ready at {','.join(connection.targets)} {waited}: {code}") from error
    finally:
        finished.set()
        watcher.join()
        channel.unsubscribe(seen)
        channel.close()
