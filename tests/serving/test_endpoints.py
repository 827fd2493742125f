"""Chat, models, health and dynamic batching under concurrency, against the real deployment."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from .conftest import Api


def test_chat_completion_answers_with_the_chat_format(api, demo_deployment):
    status, body = api.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "What is 23+45?"}],
                                                      "max_tokens": 8})
    assert status == 200, body
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip().isdigit(), choice  # a sum, in the chat format (accuracy: test_demo_accuracy)
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
    assert set(body["engine"]) >= {"slots", "decode_steps", "decoded_rows", "prefills", "mean_active_rows"}


def test_concurrent_requests_each_get_their_own_answer_and_are_batched(demo_deployment, heldout_addition):
    items = heldout_addition[30:62]
    clients = [Api(demo_deployment.url) for _ in range(16)]
    before = clients[0].get("/v1/health")[1]

    def ask(index: int) -> str:
        payload = {"prompt": items[index]["prompt"], "max_tokens": 6, "stop": ";"}
        return clients[index % 16].post("/v1/completions", payload)[1]["choices"][0]["text"]

    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(ask, range(len(items))))
    sequential = [ask(i) for i in range(len(items))]
    assert concurrent == sequential  # batching changes no answer and mixes none up
    after = clients[0].get("/v1/health")[1]
    assert after["batching"]["requests"] - before["batching"]["requests"] == 2 * len(items)  # one Triton request each
    engine = {key: after["engine"][key] - before["engine"][key] for key in ("decode_steps", "decoded_rows",
                                                                           "prefilled_rows")}
    assert engine["prefilled_rows"] == 2 * len(items)
    assert engine["decoded_rows"] > engine["decode_steps"], engine  # some decode steps served several requests


def test_a_short_request_overtakes_a_long_one_in_flight(demo_deployment, heldout_addition):
    """Triton hands every request to the engine at once (decoupled model) and it joins the running batch,
    so a short answer asked for while a long generation runs comes back first. A coupled model would
    hold the short request in Triton's queue until the long one had finished."""
    finished: list[str] = []
    long_client, short_client = Api(demo_deployment.url), Api(demo_deployment.url)

    def long_generation() -> dict:
        body = long_client.complete(prompt="rev abc=", max_tokens=110, ignore_eos=True)
        finished.append("long")
        return body

    with ThreadPoolExecutor(1) as pool:
        long_reply = pool.submit(long_generation)
        _wait_for_decoding(short_client)
        short = short_client.complete(prompt=heldout_addition[0]["prompt"], max_tokens=6, stop=";")
        finished.append("short")
        long_body = long_reply.result()
    assert finished == ["short", "long"]
    assert short["choices"][0]["text"] == heldout_addition[0]["answer"]
    assert long_body["usage"]["completion_tokens"] == 110  # ignore_eos: exactly max_tokens


def _wait_for_decoding(client: Api, timeout_s: float = 60.0) -> None:
    """Until the engine reports a decode step in progress, i.e. the long request is running."""
    start = client.get("/v1/health")[1]["engine"]["decode_steps"]
    deadline = time.monotonic() + timeout_s
    while client.get("/v1/health")[1]["engine"]["decode_steps"] < start + 3:
        assert time.monotonic() < deadline, "the long request never started decoding"
        time.sleep(0.005)
