"""lm-evaluation-harness (the real package) against the deployment, sample for sample equal to the builtin harness.

Four demo task formats: multiple choice scored by loglikelihood and generation, each in completion
format (`17+57=`) and chat format (`<|user|>What is 17+57?\\n<|assistant|>`) over /v1/completions
with `local-completions`; plus generation with `local-chat-completions` (the server renders the chat
template). lm-eval gets NO tokenizer argument: it finds vLLM's /tokenizer_info, /tokenize and
/detokenize routes on the server (its RemoteTokenizer), directly and through the proxy.

lm-eval's loglikelihood request is `echo: true, max_tokens: 1, logprobs: 1` and it drops the LAST
returned entry as the generated token. When that token is end-of-sequence (the chat format ends its
answers with it) the server must still report it, or lm-eval drops a prompt token instead and the
chat-format score collapses to chance: this test is the one that caught it (acc 0.49 vs 0.99).

Tasks read local JSONL files (lm-eval's `json` dataset builder with data_files); no hub is touched.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from pytest_nemo_eval.harness.runtime import HarnessInvocation, run_harness

# On Ray too (loglikelihood and chat generation, the tokenizer routes lm-eval reads): the front is shared, so
# the other cases add CI time, not coverage of the backend.
BOTH_BACKENDS = pytest.mark.serving_backends("pytriton", "ray")

DATA = Path(__file__).resolve().parents[2] / "pytest_nemo_eval" / "harness" / "builtin" / "data"
LIMIT = 30  # items per task: enough to compare sample by sample, quick on two CPU cores


def _sum(prompt: str) -> tuple[int, int]:
    a, b = re.fullmatch(r"(\d+)\+(\d+)=", prompt).groups()
    return int(a), int(b)


def _chat_prompt(user: str) -> str:
    """The demo's chat format (its tokenizer's chat template, rendered by hand here)."""
    return f"<|user|>{user}\n<|assistant|>"


def _records(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()][:LIMIT]


def _formats(records: list[dict]) -> dict[str, list[dict]]:
    """The same items as a completion prompt, a chat-template prompt and a bare user message."""
    out: dict[str, list[dict]] = {"completion": [], "chat_prompt": [], "user_message": []}
    for record in records:
        a, b = _sum(record["prompt"])
        user = f"What is {a}+{b}?"
        out["completion"].append(record)
        out["chat_prompt"].append({**record, "prompt": _chat_prompt(user)})
        out["user_message"].append({**record, "prompt": user})
    return out


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    """JSONL data, lm-eval task YAMLs (--include_path) and builtin task specs for every format."""
    folder = tmp_path_factory.mktemp("lm_eval_tasks")
    for kind, source in (("mc", "demo_addition_mc.jsonl"), ("gen", "demo_addition.jsonl")):
        for fmt, records in _formats(_records(source)).items():
            name = f"demo_{kind}_{fmt}"
            data = folder / f"{name}.jsonl"
            data.write_text("".join(json.dumps(r) + "\n" for r in records))
            common = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
                      "test_split": "test", "doc_to_text": "prompt"}
            if kind == "mc":
                lm_eval_task = {**common, "output_type": "multiple_choice", "doc_to_choice": "choices",
                                "doc_to_target": "label", "target_delimiter": "", "metric_list": [{"metric": "acc"}]}
                builtin = {"type": "multiple_choice", "data": str(data), "choices_field": "choices",
                           "label_field": "label", "choice_template": "{choice}"}
            else:
                lm_eval_task = {**common, "output_type": "generate_until", "doc_to_target": "answer",
                                "generation_kwargs": {"until": [";", "\n"], "max_gen_toks": 8, "do_sample": False,
                                                      "temperature": 0.0},
                                "metric_list": [{"metric": "exact_match"}]}
                builtin = {"type": "exact_match", "data": str(data), "answer_field": "answer",
                           "extract_regex": "(-?[0-9]+)", "extract": "first", "max_tokens": 8, "stop": [";", "\n"]}
            (folder / f"{name}.yaml").write_text(yaml.safe_dump(lm_eval_task))
            (folder / "builtin").mkdir(exist_ok=True)
            (folder / "builtin" / f"{name}.yaml").write_text(yaml.safe_dump(builtin))
    return folder


def run_lm_eval(url: str, model_id: str, task: str, task_dir: Path, *, chat: bool = False) -> list[dict]:
    """lm-eval's samples for `task`, ordered by doc_id; no tokenizer argument at all."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    endpoint = "/v1/chat/completions" if chat else "/v1/completions"
    results = simple_evaluate(
        model="local-chat-completions" if chat else "local-completions",
        model_args={"base_url": url + endpoint, "model": model_id, "num_concurrent": 2, "max_retries": 1},
        tasks=[task], task_manager=TaskManager(include_path=str(task_dir)), log_samples=True,
        apply_chat_template=chat, bootstrap_iters=0,
    )
    return sorted(results["samples"][task], key=lambda s: s["doc_id"])


def run_builtin(url: str, task: str, task_dir: Path, tmp_path: Path, *, chat: bool = False) -> list[dict]:
    inv = HarnessInvocation(
        harness="builtin", task=task, model_id="demo", runtime="local", timeout_s=300,
        model_url=url + ("/v1/chat/completions" if chat else "/v1/completions"),
        model_type="chat" if chat else "completions", output_dir=tmp_path / task, log_prefix=task,
        overrides={"task_spec": str(task_dir / "builtin" / f"{task}.yaml")}, parallelism=2,
    )
    run = run_harness(inv)
    return [json.loads(line) for line in (run.output_dir / f"samples_{task}.jsonl").read_text().splitlines()]


def _assert_mc_equal(ours: list[dict], theirs: list[dict]) -> float:
    assert len(ours) == len(theirs) == LIMIT
    for builtin, lm in zip(ours, theirs):
        lm_loglikelihoods = [resp[0][0] for resp in lm["resps"]]
        assert lm_loglikelihoods == pytest.approx(builtin["details"]["loglikelihoods"], abs=1e-4), builtin["id"]
        assert lm["acc"] == builtin["scores"]["acc"], builtin["id"]
    return sum(s["acc"] for s in theirs) / len(theirs)


def _assert_generation_equal(ours: list[dict], theirs: list[dict]) -> float:
    assert len(ours) == len(theirs) == LIMIT
    for builtin, lm in zip(ours, theirs):
        assert lm["resps"][0][0] == builtin["response"], builtin["id"]
        assert lm["exact_match"] == builtin["scores"]["exact_match"], builtin["id"]
    return sum(s["exact_match"] for s in theirs) / len(theirs)


@BOTH_BACKENDS
@pytest.mark.parametrize("fmt", ["completion", "chat_prompt"])
def test_local_completions_multiple_choice_equals_the_builtin_harness(base_url, model_id, task_dir, tmp_path, fmt):
    task = f"demo_mc_{fmt}"
    acc = _assert_mc_equal(run_builtin(base_url, task, task_dir, tmp_path), run_lm_eval(base_url, model_id, task, task_dir))
    assert acc > 0.6, f"{task}: acc {acc} (chance 0.25): the demo learned these sums"


@pytest.mark.parametrize("fmt", ["completion", "chat_prompt"])
def test_local_completions_generation_equals_the_builtin_harness(base_url, model_id, task_dir, tmp_path, fmt):
    task = f"demo_gen_{fmt}"
    score = _assert_generation_equal(run_builtin(base_url, task, task_dir, tmp_path),
                                     run_lm_eval(base_url, model_id, task, task_dir))
    assert score > 0.6, f"{task}: exact_match {score}"


@BOTH_BACKENDS
def test_local_chat_completions_generation_equals_the_builtin_harness(base_url, model_id, task_dir, tmp_path):
    task = "demo_gen_user_message"
    score = _assert_generation_equal(run_builtin(base_url, task, task_dir, tmp_path, chat=True),
                                     run_lm_eval(base_url, model_id, task, task_dir, chat=True))
    assert score > 0.6, f"{task}: exact_match {score}"


def test_through_the_proxy_lm_eval_finds_the_tokenizer_routes_and_scores_the_same(base_url, model_id, task_dir,
                                                                                  tmp_path):
    """The proxy relays /tokenizer_info, /tokenize, /detokenize on each benchmark's route, so lm-eval
    pointed at a benchmark's proxy URL needs no tokenizer argument either; its requests are counted there."""
    from pytest_nemo_eval.adapters.server import ProxyServer

    task = "demo_mc_chat_prompt"
    direct = run_lm_eval(base_url, model_id, task, task_dir)
    with ProxyServer(base_url).start() as proxy:
        route = proxy.register_benchmark("lm-eval-mc")
        proxied = run_lm_eval(route, model_id, task, task_dir)
        stats = proxy.stats("lm-eval-mc")
    # Same scores; loglikelihoods equal up to float noise (in-flight batches of other shapes differ in the last bits).
    for through_proxy, straight in zip(proxied, direct, strict=True):
        assert [r[0][1] for r in through_proxy["resps"]] == [r[0][1] for r in straight["resps"]]  # is_greedy
        assert [r[0][0] for r in through_proxy["resps"]] == pytest.approx([r[0][0] for r in straight["resps"]], abs=1e-4)
        assert through_proxy["acc"] == straight["acc"]
    assert stats.errors == 0
    assert stats.requests >= 4 * LIMIT  # every choice's loglikelihood, plus the tokenizer calls
