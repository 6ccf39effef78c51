"""The server's log lines: plain text or JSON (`--log-format json`), trace ids when tracing is on,
and per-request warnings rate-limited to one line per interval with a count of the rest.

One refused call is one event, but a thousand refused calls a second must not be a thousand log
lines: ``RateLimitedLog`` writes the first, then at most one line per interval saying how many
like it it held back.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(trace)s"
JSON_FIELDS = ("asctime", "levelname", "name", "message")

# The current trace and span ids as hex, or None outside a traced call; set by tracing when it is on.
TraceIds = Callable[[], tuple[str, str] | None]


class TraceFilter(logging.Filter):
    """Puts the current trace and span ids on every record: `trace_id`/`span_id` fields in JSON,
    ` trace_id=... span_id=...` at the end of a text line; nothing when tracing is off."""

    def __init__(self) -> None:
        super().__init__()
        self.current: TraceIds | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        ids = self.current() if self.current is not None else None
        record.trace = f" trace_id={ids[0]} span_id={ids[1]}" if ids else ""
        if ids:
            record.trace_id, record.span_id = ids
        return True


TRACE_FILTER = TraceFilter()


def configure(level: str, log_format: Literal["text", "json"], interval_s: float = 1.0, stream: object = None) -> None:
    """The root logger's one handler, on stderr; ``interval_s`` spaces rate-limited lines."""
    RateLimitedLog.interval_s = interval_s
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    if log_format == "json":
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(TRACE_FILTER)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


class RateLimitedLog:
    """At most one line per ``interval_s`` for one kind of per-request event; the line says how many
    of the same kind were held back since the last one (also as `suppressed` in JSON)."""

    interval_s = 1.0  # the server sets it from --log-interval-s at start

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING) -> None:
        self.logger, self.level = logger, level
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._held = 0

    def log(self, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval_s:
                self._held += 1
                return
            held, self._held, self._last = self._held, 0, now
        if held:
            message += " (and %d more like it since the last such line)"
            args = (*args, held)
        self.logger.log(self.level, message, *args, extra={"suppressed": held})


def json_formatter() -> logging.Formatter:
    """One JSON object per line (python-json-logger, imported only when asked for): the fields of
    JSON_FIELDS, `level` and `logger` renamed, and any extra such as `trace_id` or `suppressed`."""
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ImportError as error:
        raise ImportError(
            f"--log-format json needs python-json-logger: pip install 'atento[serve]' ({error})"
        ) from error

    class JsonLines(JsonFormatter):
        def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message: dict[str, Any]) -> None:
            super().add_fields(log_data, record, message)
            log_data.pop("trace", None)  # the text format's suffix; JSON has trace_id and span_id

    return JsonLines(list(JSON_FIELDS), rename_fields={"levelname": "level", "name": "logger"})
