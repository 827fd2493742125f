"""Each interceptor, exercised through a real proxy in front of a real (scripted) upstream."""

from __future__ import annotations

import json

import pytest
import requests

from pytest_nemo_eval.adapters import (
    AdapterConfig,
    CustomInterceptor,
    Interceptor,
    LoggingConfig,
    PayloadModifierConfig,
    ReasoningConfig,
    SystemMessageConfig,
    register_interceptor,
)

from .openai_calls import chat, completion


def test_empty_chain_preserves_upstream_bytes_exactly(upstream, start_proxy, http):
    """With no interceptor changing the reply, the client gets the upstream's bytes unchanged. (The scripted
    upstream ignores max_tokens: a cap below its 11-token echo would be relabeled "length" by finish_reason.)"""
    proxy = start_proxy(upstream.url)
    body = b'{"prompt":  "caf\\u00e9 \xe2\x98\x95",   "model":"m", "max_tokens": 30}'
    via_proxy = http.post(f"{proxy.url}/v1/completions", data=body, headers={"Content-Type": "application/json"})
    direct = http.post(f"{upstream.url}/v1/completions", data=body, headers={"Content-Type": "application/json"})
    assert via_proxy.status_code == 200
    assert via_proxy.content.replace(b"cmpl-1", b"cmpl-2") == direct.content  # only the call counter differs
    assert via_proxy.headers["Content-Type"] == "application/json"
    assert http.get(f"{proxy.url}/v1/models").json()["data"][0]["id"] == "scripted-model"


def test_streamed_replies_are_relayed_whole_and_exact(upstream, start_proxy, http):
    """Streaming is not required of the proxy; an SSE reply is relayed (buffered) byte for byte, not cached."""
    proxy = start_proxy(upstream.url, AdapterConfig(cache="reuse", reasoning={}))
    first = completion(http, proxy.url, "s", stream=True)
    assert first.status_code == 200 and first.headers["Content-Type"] == "text/event-stream"
    assert first.content.startswith(b"data: {") and first.content.endswith(b"data: [DONE]\n\n")
    assert b'"echo:s"' in first.content
    second = completion(http, proxy.url, "s", stream=True)
    assert second.content != first.content and proxy.stats().cache_hits == 0  # new call id: not from the cache


@pytest.mark.parametrize(
    ("mode", "expected_first", "expected_count"),
    [
        ("replace", "SYS", 1),
        ("prepend", "SYS\n\nold", 1),
        ("append", "old\n\nSYS", 1),
    ],
)
def test_system_message_modes_for_chat(upstream, start_proxy, http, mode, expected_first, expected_count):
    proxy = start_proxy(upstream.url, AdapterConfig(system_message=SystemMessageConfig(content="SYS", mode=mode)))
    messages = [{"role": "system", "content": "old"}, {"role": "user", "content": "q"}]
    sent = chat(http, proxy.url, messages).json()["received"]["messages"]
    assert sent[0] == {"role": "system", "content": expected_first}
    assert [m["role"] for m in sent].count("system") == expected_count
    assert sent[-1] == {"role": "user", "content": "q"}
    without_system = chat(http, proxy.url, [{"role": "user", "content": "q"}]).json()["received"]["messages"]
    assert without_system == [{"role": "system", "content": "SYS"}, {"role": "user", "content": "q"}]


def test_system_message_for_completions_is_opt_in(upstream, start_proxy, http):
    """Completions have no roles: by default the prompt is untouched (loglikelihood scoring stays exact)."""
    default = start_proxy(upstream.url, AdapterConfig(system_message="SYS"))
    assert completion(http, default.url, "2+2=").json()["received"]["prompt"] == "2+2="
    prepend = start_proxy(upstream.url, AdapterConfig(system_message=SystemMessageConfig(content="SYS", completions="prepend")))
    assert completion(http, prepend.url, "2+2=").json()["received"]["prompt"] == "SYS\n\n2+2="


def test_payload_modifier_sets_overrides_removes_and_caps(upstream, start_proxy, http):
    config = AdapterConfig(payload_modifier=PayloadModifierConfig(
        defaults={"top_p": 0.9, "seed": 1}, override={"temperature": 0}, remove=["logit_bias"], cap={"max_tokens": 64},
    ))
    proxy = start_proxy(upstream.url, config)
    sent = completion(http, proxy.url, temperature=0.7, seed=7, max_tokens=4096, logit_bias={"1": 2}).json()["received"]
    assert sent["temperature"] == 0 and sent["seed"] == 7 and sent["top_p"] == 0.9
    assert sent["max_tokens"] == 64 and "logit_bias" not in sent
    small = completion(http, proxy.url, max_tokens=8).json()["received"]
    assert small["max_tokens"] == 8


def test_reasoning_is_stripped_and_counted(upstream, start_proxy, http):
    upstream.script.reply_prefix = "<think>let me add 2 and 2</think>  "
    proxy = start_proxy(upstream.url, AdapterConfig(reasoning=ReasoningConfig()))
    reply = chat(http, proxy.url, [{"role": "user", "content": "2+2?"}]).json()
    message = reply["choices"][0]["message"]
    assert message["content"] == "echo:2+2?"
    assert message["reasoning_content"] == "let me add 2 and 2"
    text_reply = completion(http, proxy.url, "x").json()
    assert text_reply["choices"][0]["text"] == "echo:x"
    stats = proxy.stats()
    # the scripted upstream's tokens are characters, so the split is exact: 36 removed characters per reply
    assert stats.reasoning_tokens == 2 * len("<think>let me add 2 and 2</think>  ")
    assert stats.completion_tokens == stats.reasoning_tokens + len("echo:2+2?") + len("echo:x")


def test_reasoning_leaves_echo_replies_and_unclosed_thinking_alone(upstream, start_proxy, http):
    upstream.script.reply_prefix = "<think>unfinished "
    proxy = start_proxy(upstream.url, AdapterConfig(reasoning=ReasoningConfig()))
    text = completion(http, proxy.url, "x").json()["choices"][0]["text"]
    assert text == "<think>unfinished echo:x"
    upstream.script.reply_prefix = "<think>a</think>"
    echoed = completion(http, proxy.url, "x", echo=True, logprobs=1, max_tokens=0).json()
    assert echoed["choices"][0]["text"] == "<think>a</think>echo:x"


def test_logging_writes_jsonl_with_secrets_redacted_and_respects_max_entries(upstream, start_proxy, http, tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY_FOR_TEST", "sk-very-secret-value")
    config = AdapterConfig(request_logging=LoggingConfig(max_entries=2), response_logging=LoggingConfig())
    proxy = start_proxy(upstream.url, config, upstream_api_key_env="UPSTREAM_KEY_FOR_TEST")
    for i in range(3):
        reply = http.post(f"{proxy.url}/v1/completions", timeout=30,
                          json={"model": "m", "prompt": f"p{i}", "api_key": "client-key", "max_tokens": 5},
                          headers={"Authorization": "Bearer client-token", "X-Api-Key": "xk"})
        assert reply.status_code == 200
        assert reply.json()["seen_authorization"] == "Bearer sk-very-secret-value"  # the proxy's key went upstream
    requests_log = (tmp_path / "logs" / "default" / "requests.jsonl").read_text().splitlines()
    responses_log = (tmp_path / "logs" / "default" / "responses.jsonl").read_text().splitlines()
    assert len(requests_log) == 2 and len(responses_log) == 3
    everything = "\n".join(requests_log + responses_log)
    for secret in ("sk-very-secret-value", "client-token", "client-key", '"xk"'):
        assert secret not in everything
    first = json.loads(requests_log[0])
    assert first["headers"]["Authorization"] == "[REDACTED]"
    assert first["body"]["prompt"] == "p0" and first["body"]["max_tokens"] == 5  # "max_tokens" is no secret
    assert json.loads(responses_log[0])["body"]["seen_authorization"] == "Bearer [REDACTED]"


def test_missing_api_key_variable_is_a_clear_error(upstream):
    from pytest_nemo_eval.adapters import ProxyServer

    with pytest.raises(ValueError, match="NO_SUCH_KEY_VAR is not set"):
        ProxyServer(upstream.url, upstream_api_key_env="NO_SUCH_KEY_VAR").start()


@register_interceptor("test_tag_prompt")
class TagPrompt(Interceptor):
    """A user interceptor: appends a tag to every completions prompt."""

    def handle(self, request, call_next):
        if request.json and "prompt" in request.json:
            request.set_json({**request.json, "prompt": request.json["prompt"] + self.config["tag"]})
        return call_next(request)


def test_custom_interceptor_registered_by_name(upstream, start_proxy, http):
    proxy = start_proxy(upstream.url, AdapterConfig(custom=[CustomInterceptor(name="test_tag_prompt", config={"tag": "#"})]))
    assert completion(http, proxy.url, "hi").json()["received"]["prompt"] == "hi#"


def test_unknown_interceptor_and_bad_config_are_clear_errors(upstream, start_proxy):
    with pytest.raises(ValueError, match="Unknown interceptor 'nope'.*register_interceptor"):
        start_proxy(upstream.url, AdapterConfig(custom=[CustomInterceptor(name="nope")]))
    with pytest.raises(ValueError, match=r"retry\.max_retries.*greater than or equal to 0"):
        AdapterConfig.parse_user({"retry": {"max_retries": -1}})
    with pytest.raises(ValueError, match="cache.mode"):
        AdapterConfig.parse_user({"cache": {"mode": "sometimes"}})


def test_yaml_config_file(tmp_path):
    path = tmp_path / "adapter.yaml"
    path.write_text("system_message: Be brief.\ncache: refresh\npayload_modifier:\n  override: {temperature: 0}\n")
    config = AdapterConfig.from_yaml(path)
    assert config.system_message.content == "Be brief."
    assert config.cache.mode == "refresh"
    assert config.payload_modifier.override == {"temperature": 0}
    path.write_text("cache: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        AdapterConfig.from_yaml(path)


def test_upstream_client_errors_pass_through_or_raise(upstream, start_proxy, http):
    upstream.script.fail_next, upstream.script.fail_status = 1, 422
    passing = start_proxy(upstream.url)
    reply = completion(http, passing.url)
    assert reply.status_code == 422 and reply.json()["error"]["message"] == "scripted failure 422"
    upstream.script.fail_next = 1
    raising = start_proxy(upstream.url, AdapterConfig.parse_user({"retry": {"client_errors": "raise"}}))
    reply = completion(http, raising.url)
    assert reply.status_code == 502
    assert "rejected POST /v1/completions with 422" in reply.json()["error"]["message"]
    assert raising.stats().errors == 1 and raising.stats().retries == 0


def test_stats_count_tokens_and_latency(upstream, start_proxy, http):
    proxy = start_proxy(upstream.url)
    for prompt in ("one two three", "four five"):
        assert completion(http, proxy.url, prompt).status_code == 200
    stats = proxy.stats()
    assert stats.requests == 2 and stats.errors == 0 and stats.successes == 2
    assert stats.prompt_tokens == 5
    assert stats.completion_tokens == len("echo:one two three") + len("echo:four five")
    assert 0 < stats.latency_p50_ms <= stats.latency_p99_ms
    assert stats.status_counts == {"200": 2}


def test_methods_and_query_strings_are_forwarded(upstream, start_proxy):
    proxy = start_proxy(upstream.url)
    missing = requests.get(f"{proxy.url}/v1/nothing?x=1", timeout=10)
    assert missing.status_code == 404 and "no route GET /v1/nothing" in missing.json()["error"]["message"]
