"""Adding an interceptor is adding one file, and the chain order is the documented one.

The drop-in test copies the installed package to a temporary directory, adds
ONE new module to its `adapters/interceptors/` and runs `nemo-eval proxy` from
that copy against the scripted upstream: the new interceptor's key is accepted
(and validated) in the YAML config, and it changes requests at its declared
place in the chain, with no other file edited.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

import pytest_nemo_eval
from pytest_nemo_eval.adapters import AdapterConfig, CustomInterceptor, Interceptor, register_interceptor
from pytest_nemo_eval.adapters.cli import READY_PREFIX
from pytest_nemo_eval.adapters.builtins import chain_order
from pytest_nemo_eval.adapters.registry import CUSTOM_SLOT

from .openai_calls import completion

README = Path(pytest_nemo_eval.__file__).parent / "adapters" / "README.md"
DOCUMENTED_ORDER = ("stats", "progress_tracking", "response_logging", "log_tokens", "reasoning_replay", "reasoning",
                    "system_message", "modify_tools", "chat_template_kwargs", "payload_modifier", CUSTOM_SLOT,
                    "request_logging", "finish_reason", "cache", "raise_client_errors", "retry")
AFTER_PAYLOAD_MODIFIER = DOCUMENTED_ORDER.index("payload_modifier") + 1

# One self-contained file: its config model, its name, its place (between payload_modifier, 40, and the
# custom slot, 50), its shorthand. Nothing else in the package mentions it.
PROMPT_SUFFIX_MODULE = '''
"""Appends a fixed suffix to completions prompts (a test's drop-in interceptor)."""

from ..registry import Handler, Interceptor, StrictConfig, register_interceptor


class PromptSuffixConfig(StrictConfig):
    enabled: bool = True
    suffix: str


@register_interceptor("prompt_suffix")
class PromptSuffixInterceptor(Interceptor):
    config_model = PromptSuffixConfig
    order = 45
    shorthand_field = "suffix"

    def handle(self, request, call_next: Handler):
        if request.json is not None and isinstance(request.json.get("prompt"), str):
            request.set_json({**request.json, "prompt": request.json["prompt"] + self.config.suffix})
        return call_next(request)
'''


def test_chain_order_is_the_documented_one():
    assert chain_order() == DOCUMENTED_ORDER
    documented = re.search(r"^\s+(stats >.*?> upstream)$", README.read_text(), re.MULTILINE | re.DOTALL)
    assert documented, f"{README} lost its chain diagram"
    names = [name.strip() for name in documented.group(1).split(">")]
    # the diagram writes the slot of the custom interceptors as `custom`
    assert tuple(CUSTOM_SLOT if n == "custom" else n for n in names) == (*DOCUMENTED_ORDER, "upstream")


@register_interceptor("test_registry_pass")
class PassThrough(Interceptor):
    """A custom interceptor that changes nothing: only its place in the chain matters here."""

    def handle(self, request, call_next):
        return call_next(request)


def test_a_route_built_with_everything_on_nests_in_that_order(upstream, start_proxy):
    config = AdapterConfig.parse_user({
        "system_message": "S", "modify_tools": {"strip_properties": ["x"]}, "payload_modifier": {}, "request_logging": {}, "response_logging": {},
        "reasoning": {}, "cache": "reuse", "retry": {"max_retries": 0}, "reasoning_replay": {},
        "chat_template_kwargs": {"kwargs": {"enable_thinking": False}}, "custom": [{"name": "test_registry_pass"}],
        "progress_tracking": {}, "log_tokens": {}, "raise_client_errors": {},
    })
    proxy = start_proxy(upstream.url, config)
    names = [i.name for i in proxy._require_started().get("default").interceptors]
    assert names == [("test_registry_pass" if n == CUSTOM_SLOT else n) for n in DOCUMENTED_ORDER]


@pytest.mark.parametrize(("config", "expected"), [
    ({}, ["stats", "finish_reason", "retry"]),  # stats: always on, no key; finish_reason and retry: on by default
    ({"cache": "off", "reasoning": {"enabled": False}, "request_logging": None, "finish_reason": {"enabled": False}},
     ["stats", "retry"]),
    ({"cache": "refresh", "response_logging": {"enabled": True}},
     ["stats", "response_logging", "finish_reason", "cache", "retry"]),
])
def test_each_interceptor_decides_when_it_is_on(upstream, start_proxy, config, expected):
    proxy = start_proxy(upstream.url, AdapterConfig.parse_user(config))
    assert [i.name for i in proxy._require_started().get("default").interceptors] == expected


def test_stats_has_no_key_and_unknown_keys_stay_errors():
    with pytest.raises(ValueError, match=r"stats: Extra inputs are not permitted\. Known keys: .*\bcache\b"):
        AdapterConfig.parse_user({"stats": {}})
    with pytest.raises(ValueError, match=r"retry: Input should be a valid dictionary or instance of RetryConfig"):
        AdapterConfig.parse_user({"retry": None})
    assert AdapterConfig(custom=[CustomInterceptor(name="x")]).custom[0].name == "x"


def test_a_new_interceptor_is_one_new_file(upstream, tmp_path):
    copy = tmp_path / "site"
    shutil.copytree(Path(pytest_nemo_eval.__file__).parent, copy / "pytest_nemo_eval",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "pytest_nemo_eval" / "adapters" / "interceptors" / "prompt_suffix.py").write_text(PROMPT_SUFFIX_MODULE)
    env = {**os.environ, "PYTHONPATH": str(copy)}

    def proxy_cli(config_text: str) -> subprocess.Popen:
        config = tmp_path / "adapter.yaml"
        config.write_text(config_text)
        return subprocess.Popen(
            [sys.executable, "-m", "pytest_nemo_eval.adapters.cli", "--upstream", upstream.url, "--config",
             str(config), "--log-dir", str(tmp_path / "logs")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env, cwd=tmp_path)

    # the new key is validated like the built-in ones
    bad = proxy_cli("prompt_suffix: {suffix: '!', colour: blue}\n")
    out, err = bad.communicate(timeout=60)
    assert bad.returncode == 2, out + err
    assert "prompt_suffix.colour: Extra inputs are not permitted" in err and "prompt_suffix" in err.split("Known keys:")[1]

    # ... and works through the proxy, inside request_logging (order 60): the log shows the suffixed prompt
    process = proxy_cli("prompt_suffix: '!!'\nrequest_logging: {}\npayload_modifier: {override: {max_tokens: 3}}\n")
    try:
        line = process.stdout.readline()
        assert line.startswith(READY_PREFIX), line + process.stderr.read()
        url = line[len(READY_PREFIX):].split()[0]
        with requests.Session() as http:
            reply = completion(http, url, "hi")
            assert reply.status_code == 200, reply.text
            assert reply.json()["received"]["prompt"] == "hi!!" and reply.json()["received"]["max_tokens"] == 3
            chain = _run_in_copy(env, "from pytest_nemo_eval.adapters.builtins import chain_order; print(*chain_order())")
            assert chain.split() == [*DOCUMENTED_ORDER[:AFTER_PAYLOAD_MODIFIER], "prompt_suffix",
                                     *DOCUMENTED_ORDER[AFTER_PAYLOAD_MODIFIER:]]
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    logged = (tmp_path / "logs" / "default" / "requests.jsonl").read_text()
    assert '"prompt":"hi!!"' in logged.replace(" ", "")

    # the copy really was the code that ran, and the package under test does not know the new key
    assert _run_in_copy(env, "import pytest_nemo_eval; print(pytest_nemo_eval.__file__)").startswith(str(copy))
    with pytest.raises(ValueError, match="prompt_suffix: Extra inputs are not permitted"):
        AdapterConfig.parse_user({"prompt_suffix": "!!"})


def _run_in_copy(env: dict[str, str], code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=60, cwd=env["PYTHONPATH"])
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
