"""The CUDA path's choices that can be checked without a GPU: provider options, sessions per worker,
batching defaults per provider. What only a device can show runs in `make gpu-check`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from atento.service.batcher import Batcher, BatchLimits
from atento.service.bundle import GraphRole, read_bundle
from atento.service.config import Settings, settings_from
from atento.service.metrics import Metrics
from atento.service.placement import PlacementError, astray, check_placement, read_profile
from atento.service.provider_defaults import PROVIDER_DEFAULTS, batch_ceiling, for_provider
from atento.service.runtime import CPU, CUDA, CUDA_OPTIONS, Outputs, Runtime, replicas_for, session_providers
from atento.service.tokenizer import Encoded


@pytest.mark.fast
def test_cuda_sessions_get_the_documented_options_and_the_cpu_for_shape_ops() -> None:
    providers = session_providers(CUDA)
    assert providers == [(CUDA, CUDA_OPTIONS), CPU]
    options = providers[0][1]  # type: ignore[index]
    assert options["use_tf32"] == "0"  # fp32 parity: TF32 would cost ~1e-3
    assert options["arena_extend_strategy"] == "kSameAsRequested"
    assert options["cudnn_conv_algo_search"] == "DEFAULT"
    assert options["do_copy_in_default_stream"] == "1"
    assert all(isinstance(value, str) for value in options.values())  # ORT takes strings only
    assert session_providers(CPU) == [CPU]


@pytest.mark.fast
def test_one_session_per_worker_on_cuda_one_shared_on_the_cpu() -> None:
    assert [replicas_for(CUDA, n) for n in (1, 2, 4)] == [1, 2, 4]
    assert [replicas_for(CPU, n) for n in (1, 2, 4)] == [1, 1, 1]


@pytest.mark.fast
def test_cuda_batching_defaults_apply_only_where_the_user_set_nothing() -> None:
    cuda = PROVIDER_DEFAULTS[CUDA]
    resolved = for_provider(Settings(), CUDA)
    assert resolved.max_batch_tokens == cuda["max_batch_tokens"] > Settings().max_batch_tokens
    assert resolved.max_batch_size == cuda["max_batch_size"] > Settings().max_batch_size
    assert for_provider(Settings(), CPU) == Settings()  # the CPU keeps config.py's defaults
    chosen = for_provider(Settings(max_batch_tokens=4096), CUDA)
    assert chosen.max_batch_tokens == 4096 and chosen.max_batch_size == cuda["max_batch_size"]


@pytest.mark.fast
def test_histogram_buckets_reach_the_largest_batch_the_provider_may_run(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = Settings()
    assert batch_ceiling(cpu) == (cpu.max_batch_size, cpu.max_batch_tokens)  # this onnxruntime has no CUDA
    # A GPU machine's onnxruntime (the one thing here that stands in for hardware): the CUDA defaults
    # may apply once the model loads, so the buckets made before it reach them, unless the user chose.
    monkeypatch.setattr("onnxruntime.get_available_providers", lambda: [CUDA, CPU])
    cuda = PROVIDER_DEFAULTS[CUDA]
    assert batch_ceiling(cpu) == (cuda["max_batch_size"], cuda["max_batch_tokens"])
    assert batch_ceiling(Settings(provider="cpu")) == (cpu.max_batch_size, cpu.max_batch_tokens)
    assert batch_ceiling(Settings(max_batch_size=512, max_batch_tokens=2048)) == (512, 2048)


def test_an_environment_variable_counts_as_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATENTO_MAX_BATCH_SIZE", "32")
    resolved = for_provider(settings_from(), CUDA)
    assert resolved.max_batch_size == 32 and resolved.max_batch_tokens == PROVIDER_DEFAULTS[CUDA]["max_batch_tokens"]


class WorkerRecordingRuntime(Runtime):
    """The real runtime, noting which worker ran each packed run (and so which replica's sessions)."""

    workers_seen: set[int]

    def run(self, inputs: Mapping[str, np.ndarray], graph: GraphRole = GraphRole.FAST, worker: int = 0) -> Outputs:
        self.workers_seen.add(worker)
        time.sleep(0.02)  # hold this worker, so the other takes the next batch
        return super().run(inputs, graph, worker)


def test_each_inference_worker_runs_its_own_sessions(tiny_bundle: Path) -> None:
    """The wiring CUDA uses (one session, so one stream, per worker), exercised on the CPU with two replicas."""
    settings = Settings(bundle=tiny_bundle, provider="cpu", inference_workers=2)
    runtime = WorkerRecordingRuntime(read_bundle(tiny_bundle), settings, replicas=2)
    runtime.workers_seen = set()
    assert runtime.replicas == 2
    ids = np.full((2, 7), 2000, dtype=np.int64)  # (B, S)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    for graph in (GraphRole.FAST, GraphRole.ATTENTION_MAPS):
        first, second = runtime.run(feeds, graph, 0), runtime.run(feeds, graph, 1)
        np.testing.assert_array_equal(first.hidden, second.hidden)  # same graph, separate sessions
    assert runtime._replicas[0][GraphRole.FAST] is not runtime._replicas[1][GraphRole.FAST]
    runtime.workers_seen.clear()

    async def scenario() -> None:
        room = {"max_queued_texts": 64, "max_attention_batch_bytes": 1 << 30}
        limits = BatchLimits(max_batch_tokens=64, max_batch_size=1, row_tokens=16, workers=2, **room)
        batcher = Batcher(runtime, limits, Metrics())
        batcher.start()
        token_ids = np.full(5, 2000, dtype=np.int64)
        text = Encoded(token_ids, np.zeros_like(token_ids), ["x"] * 5, [(0, 0)] * 5, [0] * 5, False)
        items = batcher.submit([text] * 8, graph=GraphRole.FAST, deadline=None)
        outputs = await asyncio.gather(*(item.future for item in items))
        assert all(out.hidden.shape == (5, 32) for out in outputs)
        await batcher.close()

    asyncio.run(scenario())
    assert runtime.workers_seen == {0, 1}


def test_the_cpu_runtime_keeps_one_session_per_graph(tiny_bundle: Path) -> None:
    runtime = Runtime(read_bundle(tiny_bundle), Settings(bundle=tiny_bundle, provider="cpu", inference_workers=3))
    assert runtime.replicas == 1 and runtime.on_run is None
    ids = np.full((1, 4), 2000, dtype=np.int64)  # (B, S)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    assert runtime.run(feeds, GraphRole.FAST, worker=2).run_s > 0  # any worker index lands on the one session


def profile_event(node: str, op: str, provider: str, inputs: list[dict[str, list[int]]]) -> dict[str, object]:
    """One node event as ONNX Runtime's profiler writes it (the fields read_profile uses)."""
    args = {"op_name": op, "provider": provider, "input_type_shape": inputs, "output_type_shape": inputs[:1]}
    return {"cat": "Node", "name": f"{node}_kernel_time", "args": args}


@pytest.mark.fast
def test_int64_index_arithmetic_may_stay_on_the_cpu_model_data_may_not(tmp_path: Path) -> None:
    """What a CUDA profile may look like: positions from the packed mask (int64 Where) on the CPU are
    fine; a float Add (a residual) on the CPU is refused by name."""
    events = [
        profile_event("positions_where", "Where", CPU, [{"bool": [2, 16]}, {"int64": []}, {"int64": [2, 16]}]),
        profile_event("mask_and", "And", CPU, [{"bool": [2, 16, 16]}, {"bool": [16, 16]}]),
        profile_event("q_proj", "MatMul", CUDA, [{"float16": [2, 16, 384]}]),
        profile_event("word_embeddings", "Gather", CUDA, [{"float16": [2000, 384]}, {"int64": [2, 16]}]),
    ]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(events))
    placements = read_profile(path)
    assert [p.floats for p in placements] == [False, False, True, True]
    check_placement(placements, CUDA, "encoder")  # nothing astray
    events.append(profile_event("residual_add", "Add", CPU, [{"float16": [2, 16, 384]}, {"float16": [2, 16, 384]}]))
    path.write_text(json.dumps(events))
    with pytest.raises(PlacementError, match=r"residual_add \(Add on CPUExecutionProvider\)"):
        check_placement(read_profile(path), CUDA, "encoder")
    assert [p.node for p in astray(read_profile(path), CUDA)] == ["residual_add"]
