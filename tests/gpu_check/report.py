"""The check's rows, and the markdown table and JSON file it writes."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NOT_RUN = "not run: no CUDA GPU"


@dataclass
class Row:
    """One check (``ok`` True/False against ``bound``) or one measurement (``ok`` None)."""

    part: str  # placement | capabilities | parity | service | speed | pinned
    name: str
    provider: str  # cpu | cuda | -
    dtype: str  # fp32 | fp16 | -
    value: float | str | None
    bound: str = ""
    ok: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def check(part: str, name: str, provider: str, dtype: str, value: float, bound: float, at_least: bool) -> Row:
    """A figure against its bound: ``value >= bound`` when ``at_least``, else ``value <= bound``."""
    ok = value >= bound if at_least else value <= bound
    return Row(part, name, provider, dtype, value, f"{'>=' if at_least else '<='} {bound:g}", ok)


def guarded(part: str, name: str, provider: str, dtype: str, work: Callable[[], list[Row]]) -> list[Row]:
    """``work``'s rows; if it raises, one failed row naming the error (traceback on stderr), and the
    check goes on: one run on a lent GPU must write down everything it could measure."""
    try:
        return work()
    except Exception as error:
        traceback.print_exc()
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return [
            Row(part, f"{name} crashed: {type(error).__name__}: {first[:300]}", provider, dtype, "error", "", False)
        ]


def _cell(value: float | str | None) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def markdown(rows: list[Row], header: str) -> str:
    checks = [r for r in rows if r.part not in ("speed", "pinned")]
    speed = [r for r in rows if r.part == "speed"]
    lines = [header, "", "| part | check | provider | dtype | value | bound | ok |", "|---|---|---|---|---|---|---|"]
    for r in checks:
        ok = {True: "yes", False: "**NO**", None: ""}[r.ok]
        lines.append(f"| {r.part} | {r.name} | {r.provider} | {r.dtype} | {_cell(r.value)} | {r.bound} | {ok} |")
    lines += [
        "",
        "| path | load (calls x texts) | provider | dtype | texts/s | tokens/s | p50 ms | p99 ms | vs anchor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in speed:
        d = r.detail
        if not d:
            lines.append(f"| {r.name} | {d.get('load', '')} | {r.provider} | {r.dtype} | {_cell(r.value)} |||||")
            continue
        ratio = f"{d['vs_anchor']:.2f}x" if d.get("vs_anchor") else ""
        lines.append(
            f"| {r.name} | {d['load']} | {r.provider} | {r.dtype} | {d['texts_per_s']:.0f} | {d['tokens_per_s']:.0f} "
            f"| {d['p50_ms']:.2f} | {d['p99_ms']:.2f} | {ratio} |"
        )
    return "\n".join(lines + pinned_table([r for r in rows if r.part == "pinned"])) + "\n"


def pinned_table(rows: list[Row]) -> list[str]:
    """The pinned-core CPU rows (pinned.py): texts/s of the median round, service / in process."""
    if not rows:
        return []
    lines = [
        "",
        "| CPU path, cores not shared | load (calls x texts) | server cores | load-generator cores "
        "| texts/s (median round) | p50 ms | p99 ms | service / in process |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r.detail
        if "texts_per_s" not in d:  # not run, or crashed: the value says why
            failed = " (**failed**)" if r.ok is False else ""
            lines.append(f"| {r.name} | {d.get('load', '')} | | | {_cell(r.value)}{failed} | | | |")
            continue
        ratio = f"{d['service_vs_in_process']:.2f}" if "service_vs_in_process" in d else ""
        lines.append(
            f"| {r.name} | {d['load']} | {','.join(map(str, d['server_cores']))} "
            f"| {','.join(map(str, d['load_cores']))} | {_cell(r.value)} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} "
            f"| {ratio} |"
        )
    return lines


def write(out: Path, rows: list[Row], summary: dict[str, Any]) -> tuple[Path, Path]:
    """``out``/gpu-check.md and ``out``/gpu-check.json; returns both paths."""
    out.mkdir(parents=True, exist_ok=True)
    header = f"gpu-check on {summary['device']} ({summary['verdict']})"
    table, data = out / "gpu-check.md", out / "gpu-check.json"
    table.write_text(markdown(rows, header))
    data.write_text(json.dumps({**summary, "rows": [asdict(r) for r in rows]}, indent=2, default=str) + "\n")
    return table, data
