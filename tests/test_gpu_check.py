"""`make gpu-check`'s CPU-only part, as CI runs it: the real command on a tiny random checkpoint.

Without CUDA it must run every CPU row, write them to the markdown table and the JSON file, mark
each CUDA row as not run, say so in one line and exit 3. (On a GPU machine the same test expects
exit 0 and the CUDA rows passed.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest

from tests.conftest import ROOT
from tests.gpu_check import bootstrap, pinned, report
from tests.gpu_check.report import NOT_RUN
from tests.gpu_check.speed import LOADS

CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def test_gpu_check_cpu_part_writes_its_rows_and_says_no_gpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu-check"
    command = [sys.executable, "-m", "tests.gpu_check", "--out", str(out), "--shape", "tiny", "--rounds", "1",
               "--cpu-rounds", "1", "--pinned-rounds", "1"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == (0 if CUDA else 3), result.stderr[-4000:]
    last = result.stderr.strip().splitlines()[-1] if not CUDA else result.stdout.strip()
    if not CUDA:
        assert last.startswith("gpu-check: no CUDA GPU here (") and "CPU-only parts" in last, last

    data = json.loads((out / "gpu-check.json").read_text())
    table = (out / "gpu-check.md").read_text()
    rows = data["rows"]
    assert (
        data["cuda"] is CUDA
        and data["shape"] == "tiny"
        and set(data["stages_s"]) >= {"parity", "placement", "pinned CPU path"}
    )
    assert not [r for r in rows if r["ok"] is False], "a check failed"
    for row in rows:  # every row of the JSON is a row of the table
        assert f"| {row['name']} |" in table, row["name"]

    def names(part: str, provider: str, dtype: str) -> set[str]:
        return {r["name"] for r in rows if (r["part"], r["provider"], r["dtype"]) == (part, provider, dtype)}

    for dtype in ("fp32", "fp16"):
        assert any("static list says CUDA cannot run" in n for n in names("capabilities", "cuda", dtype))
        assert sum("compute nodes off CPU" in n for n in names("placement", "cpu", dtype)) == 2  # both graphs
        parity = names("parity", "cpu", dtype)
        for figure in (
            "pooled cosine min",
            "pooled cosine mean",
            "hidden max abs delta",
            "attention maps max abs delta",
        ):
            assert f"ORT CPU vs PyTorch CPU fp32: {figure}" in parity
        service = names("service", "cpu", dtype)
        assert {"attention maps: max |row sum - 1|", "/metrics has no atento_gpu_ series on the CPU"} <= service
        assert any(n.startswith("GetModelInfo: provider CPUExecutionProvider") for n in service)

    speed = [r for r in rows if r["part"] == "speed" and r["provider"] == "cpu"]
    loads = {f"{calls} x {texts}" for calls, texts in LOADS}
    for path, dtypes in (("in process (Runtime)", ("fp32", "fp16")), ("service (gRPC Embed)", ("fp32", "fp16")),
                         ("sentence-transformers encode (anchor)", ("fp32",))):  # fmt: skip
        for dtype in dtypes:
            measured = [r["detail"] for r in speed if r["name"] == path and r["dtype"] == dtype]
            assert {d["load"] for d in measured} == loads, (path, dtype)
            assert all(
                d["texts_per_s"] > 0 and 0 < d["p50_ms"] <= d["p99_ms"] and d.get("vs_anchor", 1) > 0 for d in measured
            )

    check_pinned_rows(rows, table)

    not_run = [r for r in rows if r["value"] == NOT_RUN]
    if CUDA:
        assert not not_run
    else:  # the CUDA rows are there, marked, never invented
        assert {r["part"] for r in not_run} == {"placement", "parity", "speed"}
        assert all(r["provider"] == "cuda" and r["ok"] is None for r in not_run)
        assert not [
            r for r in rows if r["provider"] == "cuda" and r["value"] != NOT_RUN and r["part"] != "capabilities"
        ]


def check_pinned_rows(rows: list[dict[str, Any]], table: str) -> None:
    """The pinned-core CPU part: both paths at each of its loads, measured with the ratio where this
    machine has >= 4 usable cores, else each row saying why it was not run (and nothing invented)."""
    cores = sorted(os.sched_getaffinity(0))
    physical = pinned.topology(cores)
    usable = len({physical.get(core, core) for core in cores})
    found = [r for r in rows if r["part"] == "pinned"]
    paths = (pinned.SERVICE, pinned.IN_PROCESS)
    assert sorted((r["name"], r["detail"]["load"]) for r in found) == sorted(
        (path, f"{calls} x {texts}") for path in paths for calls, texts in pinned.LOADS
    )
    assert all(r["provider"] == "cpu" and r["dtype"] == "fp32" and r["ok"] is None for r in found)
    if usable < 4:
        status = pinned.not_run_status(usable, len(cores))
        assert status.startswith(f"not run: needs ≥ 4 cores, this machine has {usable}")
        assert all(r["value"] == status and "texts_per_s" not in r["detail"] for r in found), found
        assert table.count(f"| {status} |") == len(found)
        return
    for row in found:
        detail = row["detail"]
        assert row["value"] > 0 and len(detail["server_cores"]) == pinned.SERVER_CORES
        if row["name"] == pinned.SERVICE:  # cores of its own; in process the callers share the server's
            assert not set(detail["server_cores"]) & set(detail["load_cores"])
            assert detail["service_vs_in_process"] > 0
            assert f"| {detail['service_vs_in_process']:.2f} |" in table
        else:
            assert detail["load_cores"] == detail["server_cores"]


@pytest.mark.fast
def test_the_server_and_the_load_generator_get_cores_of_their_own() -> None:
    assert pinned.split_cores(range(2)) is None and pinned.split_cores({0, 1, 2}) is None
    assert pinned.split_cores(range(4)) == ([0, 1], [2, 3])
    assert pinned.split_cores(range(16)) == ([0, 1], list(range(2, 16)))
    assert pinned.split_cores({9, 3, 5, 7, 11}) == ([3, 5], [7, 9, 11])  # a taskset-restricted, sparse set
    assert pinned.split_cores(range(8), server=4) == ([0, 1, 2, 3], [4, 5, 6, 7])
    # 4 physical cores with 2 hyperthreads each, siblings numbered n and n + 4 (as Linux often does)
    siblings = {core: core % 4 for core in range(8)}
    assert pinned.split_cores(range(8), physical=siblings) == ([0, 1], [2, 3, 6, 7])  # 4 and 5 left idle
    assert pinned.split_cores(range(8), physical={core: core // 2 for core in range(8)}) == ([0, 2], [4, 5, 6, 7])
    assert pinned.split_cores(range(6), physical={core: core % 3 for core in range(6)}) is None  # 3 physical
    assert pinned.not_run_status(2, 2) == "not run: needs ≥ 4 cores, this machine has 2"
    assert pinned.not_run_status(3, 6) == "not run: needs ≥ 4 cores, this machine has 3 (6 logical)"


@pytest.mark.fast
def test_the_package_tree_maps_the_checkout_like_the_installed_package() -> None:
    """How the GPU machine's python3 imports atento without installing it (make package-tree's layout)."""
    tree = bootstrap.package_tree()
    for name, folder in bootstrap.LINKS.items():
        assert (tree / "atento" / name).resolve() == (ROOT / folder).resolve()
    assert (tree / "atento" / "service" / "runtime.py").is_file()


@pytest.mark.fast
def test_server_subprocesses_find_pips_nvidia_libraries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for library in ("cudnn", "cublas"):
        (tmp_path / "nvidia" / library / "lib").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/elsewhere")
    found = bootstrap.child_env()["LD_LIBRARY_PATH"].split(":")
    assert found[-1] == "/opt/elsewhere"
    assert {str(tmp_path / "nvidia" / lib / "lib") for lib in ("cudnn", "cublas")} <= set(found)


@pytest.mark.fast
def test_a_crashing_part_is_a_failed_row_and_the_tables_name_it(tmp_path: Path) -> None:
    def broken() -> list[report.Row]:
        raise RuntimeError("CUDA error: out of memory\nmore")

    rows = report.guarded("service", "service", "cuda", "fp16", broken)
    rows.append(report.check("parity", "pooled cosine min", "cuda", "fp16", 0.99999, 0.9999, True))
    table, data = report.write(tmp_path, rows, {"device": "H200", "verdict": "1 failed"})
    assert [r.ok for r in rows] == [False, True]
    assert (
        "| service crashed: RuntimeError: CUDA error: out of memory | cuda | fp16 | error |  | **NO** |"
        in table.read_text()
    )
    assert json.loads(data.read_text())["rows"][1]["bound"] == ">= 0.9999"
