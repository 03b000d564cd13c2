"""Engine load from Prometheus text: vLLM V1 and V0 names, llama.cpp's, label sets."""

from __future__ import annotations

import pytest

from chatgate.engines.upstream.scrape import (
    BACKOFF_FIRST,
    BACKOFF_MAX,
    EngineMetrics,
    ScrapeState,
    parse_engine_metrics,
)

VLLM_V1 = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 3.0
vllm:num_requests_running{engine="1",model_name="Qwen/Qwen2.5-7B-Instruct"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 4.0
vllm:num_requests_waiting{engine="1",model_name="Qwen/Qwen2.5-7B-Instruct"} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="Qwen/Qwen2.5-7B-Instruct"} 0.5
# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.3",model_name="x"} 1.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf",model_name="x"} 2.0
vllm:e2e_request_latency_seconds_count{engine="0",model_name="x"} 2.0
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="x"} 0.9
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 1234.0
"""

VLLM_V0 = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 1.0
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{model_name="m"} 0.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 7.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.875
"""

LLAMA_SERVER = """\
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 2
"""


def test_vllm_v1_sums_queues_over_label_sets() -> None:
    assert parse_engine_metrics(VLLM_V1) == EngineMetrics(5.0, 5.0, 0.5)


def test_vllm_v0_cache_name() -> None:
    assert parse_engine_metrics(VLLM_V0) == EngineMetrics(1.0, 7.0, 0.875)


def test_llama_server_metrics() -> None:
    assert parse_engine_metrics(LLAMA_SERVER) == EngineMetrics(1.0, 2.0, None)


def test_untyped_series_and_one_queue_only() -> None:
    assert parse_engine_metrics("vllm:num_requests_waiting 3\n") == EngineMetrics(0.0, 3.0, None)


@pytest.mark.parametrize(
    "text",
    ["", "# just a comment\n", "process_cpu_seconds_total 12.5\n", "<html>not found</html>"],
)
def test_no_engine_metrics_is_none(text: str) -> None:
    assert parse_engine_metrics(text) is None


def test_public_view() -> None:
    assert EngineMetrics(1.0, 2.0, None).public() == {
        "requests_running": 1.0,
        "requests_waiting": 2.0,
        "kv_cache_usage": None,
    }


def test_backoff_doubles_up_to_a_cap_and_a_hit_resets_it() -> None:
    state = ScrapeState()
    assert state.due(0)
    state.miss(100)
    assert not state.due(100 + BACKOFF_FIRST - 1) and state.due(100 + BACKOFF_FIRST)
    state.miss(200)
    assert state.next_at == 200 + 2 * BACKOFF_FIRST
    for _ in range(20):
        state.miss(300)
    assert state.next_at == 300 + BACKOFF_MAX
    state.hit()
    assert state.due(0) and state.misses == 0
