"""Chat, models, health and dynamic batching under concurrency, against the real deployment."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .conftest import Api


def test_chat_completion_answers_with_the_chat_format(api, demo_deployment):
    status, body = api.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "What is 23+45?"}],
                                                      "max_tokens": 8})
    assert status == 200, body
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip() == "68"
    assert body["model"] == demo_deployment.model_id
    assert body["usage"]["completion_tokens"] >= 2
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_models_lists_the_checkpoint(api, demo_deployment):
    status, body = api.get("/v1/models")
    assert status == 200
    assert [m["id"] for m in body["data"]] == [demo_deployment.model_id]
    assert demo_deployment.model_id.startswith("nemo-demo")


def test_health_reports_ok_and_batching_stats(api):
    status, body = api.get("/v1/health")
    assert status == 200 and body["status"] == "ok"
    assert set(body["batching"]) >= {"batches", "requests", "max_batch_size_seen", "batch_size_counts"}


def test_concurrent_requests_each_get_their_own_answer_and_are_batched(demo_deployment, heldout_addition):
    items = heldout_addition[30:62]
    clients = [Api(demo_deployment.url) for _ in range(16)]
    before = clients[0].get("/v1/health")[1]["batching"]

    def ask(index: int) -> str:
        payload = {"prompt": items[index]["prompt"], "max_tokens": 6, "stop": ";"}
        return clients[index % 16].post("/v1/completions", payload)[1]["choices"][0]["text"]

    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(ask, range(len(items))))
    sequential = [ask(i) for i in range(len(items))]
    assert concurrent == sequential  # batching changes no answer and mixes none up
    after = clients[0].get("/v1/health")[1]["batching"]
    grouped = {int(k): v - before["batch_size_counts"].get(k, 0) for k, v in after["batch_size_counts"].items()}
    assert any(size > 1 and count > 0 for size, count in grouped.items()), grouped
    assert after["requests"] - before["requests"] == 2 * len(items)
