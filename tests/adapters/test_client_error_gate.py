"""raise_client_errors wired into the gate (issue 26 item 7): a benchmark whose route the interceptor tripped errors
with a Diagnosis naming the refusal even where `max_request_errors` allows the share of errors (a harness that
scores refusals as wrong answers would otherwise pass on scores that say nothing). The real interceptor in a real
proxy writes the marker, in front of the scripted upstream (the model's 4xx)."""

from __future__ import annotations

import time

import pytest

from pytest_nemo_eval.adapters import AdapterConfig
from pytest_nemo_eval.runner.execute import BenchmarkError, HarnessOutcome, require_untripped_route
from pytest_nemo_eval.suite import load_suite
from .openai_calls import completion


def test_a_tripped_route_errors_the_benchmark_whatever_max_request_errors_allows(upstream, start_proxy, http,
                                                                                  tmp_path):
    (tmp_path / "s.yaml").write_text("benchmarks:\n  - {name: mmlu, harness: builtin, task: demo_addition, "
                                     "max_request_errors: 1.0}\n")
    (benchmark,) = load_suite(tmp_path / "s.yaml").resolved()
    outcome = HarnessOutcome(scores={}, flat_scores={})
    began = time.time()
    proxy = start_proxy(upstream.url)
    base = proxy.register_benchmark("mmlu", AdapterConfig(raise_client_errors={}))
    folder = tmp_path / "logs" / "mmlu"
    assert completion(http, base, "q1").status_code == 200
    require_untripped_route(benchmark, str(folder), began, outcome)  # not tripped: nothing to say
    upstream.script.update({"fail_next": 1, "fail_status": 422})
    assert completion(http, base, "q2").status_code == 422
    with pytest.raises(BenchmarkError) as caught:
        require_untripped_route(benchmark, str(folder), began, outcome)
    message = str(caught.value)
    assert message.startswith("Diagnosis: raise_client_errors stopped s::mmlu: the model refused POST /v1/completions "
                              "with HTTP 422 (scripted failure 422)")
    assert "max_request_errors: 1` allows" in message and caught.value.outcome is outcome
    require_untripped_route(benchmark, str(folder), time.time() + 1, outcome)  # an earlier run's marker: not this run
