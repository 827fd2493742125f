"""The demo's chat template, as transformers renders it from the saved tokenizer files: tools the way
Hermes/Qwen2.5 render them inside the demo's role tokens, thinking switched by `enable_thinking` as Qwen3's
template takes it, and every other conversation as before."""

from __future__ import annotations

import json
import re

import pytest
from transformers import AutoTokenizer

from pytest_nemo_eval.checkpoint import demo
from pytest_nemo_eval.checkpoint.demo_tasks import add_tool, tool_call_turn, tool_result_turn
from pytest_nemo_eval.checkpoint.demo_tokenizer import CHAT_TEMPLATE, EOS, write_tokenizer_files
from pytest_nemo_eval.serving.reasoning_parsers import choose_reasoning_parser

TOOLS_BLOCK = "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n<tools>"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nemo_tokenizer")
    write_tokenizer_files(folder)
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def _render(tokenizer, messages, tools=None, add_generation_prompt=False) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=add_generation_prompt,
                                         tokenize=False)


@pytest.mark.parametrize("generation", [True, False])
def test_conversations_without_tools_render_as_before(saved, generation):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 12+34?"},
                {"role": "assistant", "content": "46"}, {"role": "user", "content": "And 1+2?"}]
    before = "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages) + ("<|assistant|>" if generation else "")
    assert _render(saved, messages, add_generation_prompt=generation) == before  # same text: same tokens


def test_tools_calls_and_results_render_as_hermes_inside_the_demo_turns(saved):
    tools = [add_tool(), add_tool(description=None, parameter_descriptions=None, required=False, closed=False)]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 12 plus 34?"},
                tool_call_turn(12, 34), tool_result_turn(12, 34), {"role": "tool", "content": "47"},
                {"role": "assistant", "content": "46"}]
    lines = "".join("\n" + json.dumps(tool) for tool in tools)  # transformers' tojson: json.dumps, keys unsorted
    assert _render(saved, messages, tools, add_generation_prompt=True) == (
        f"<|system|>Be brief.\n\n{TOOLS_BLOCK}{lines}\n</tools>\n"
        "<|user|>What is 12 plus 34?\n"
        '<|assistant|><tool_call>\n{"name": "add", "arguments": {"a": 12, "b": 34}}\n</tool_call>\n'
        "<|user|><tool_response>\n46\n</tool_response>\n<tool_response>\n47\n</tool_response>\n"
        "<|assistant|>46\n<|assistant|>"
    )
    without_system = _render(saved, messages[1:2], tools[:1])
    assert without_system == f"<|system|>{TOOLS_BLOCK}\n{json.dumps(tools[0])}\n</tools>\n<|user|>What is 12 plus 34?\n"


def test_arguments_given_as_a_json_string_are_rendered_as_they_are(saved):
    call = tool_call_turn(12, 34)
    call["content"] = "Adding."
    call["tool_calls"] = [call["tool_calls"][0]] * 2
    call["tool_calls"][1] = {"function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
    rendered = _render(saved, [call], [add_tool()])
    assert rendered.endswith('<|assistant|>Adding.\n<tool_call>\n{"name": "add", "arguments": {"a": 12, "b": 34}}\n'
                             '</tool_call>\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n')


def test_training_texts_are_what_the_saved_template_renders(saved):
    """Each tool_use example: per round, the call after the question, then the sum after the tool's result;
    every prompt is the saved template's rendering of the conversation so far, every completion that of the
    assistant turn less its closing newline, and one sequence trains them all."""
    corpus = demo._Corpus(seed=5)
    tokenizer = demo.build_tokenizer()
    pad = tokenizer.token_to_id("<|pad|>")
    rounds_seen, copied = set(), set()
    for _ in range(12):
        turns = corpus.sample("tool_use")
        text = turns[-1][0]
        tools = [json.loads(line) for line in text.split("<tools>\n", 1)[1].split("\n</tools>")[0].splitlines()]
        system = text.split("<|system|>", 1)[1].split(TOOLS_BLOCK)[0].removesuffix("\n\n")
        questions = [(int(a), int(b)) for a, b in re.findall(r"What is (\d+) plus (\d+)\?", text)]
        # the tool's result: the sum, or (recipe 9) an arbitrary number the answer must copy
        results = [int(r) for r in re.findall(r"<tool_response>\n(\d+)\n</tool_response>", text)]
        assert len(turns) == 2 * len(questions) and len(results) == len(questions)
        rounds_seen.add(len(questions))
        messages = [{"role": "system", "content": system}] if system else []
        for index, (a, b) in enumerate(questions):
            messages.append({"role": "user", "content": f"What is {a} plus {b}?"})
            call = f'<tool_call>\n{{"name": "add", "arguments": {{"a": {a}, "b": {b}}}}}\n</tool_call>{EOS}'
            assert turns[2 * index] == (_render(saved, messages, tools, add_generation_prompt=True), call)
            result = results[index]
            copied.add(result == a + b)
            messages += [tool_call_turn(a, b), {**tool_result_turn(a, b), "content": str(result)}]
            assert turns[2 * index + 1] == (_render(saved, messages, tools, add_generation_prompt=True), f"{result}{EOS}")
            messages.append({"role": "assistant", "content": str(result)})
        tokens, labels = demo._encoded(turns, tokenizer, pad)
        # an end-of-text label where each earlier turn ends and its text goes on with a newline
        ends = [len(tokenizer.encode(prompt + completion).ids) - 1 for prompt, completion in turns]
        # recipe 10: the answer after each result (every second turn) has its own loss weight, on its tokens only
        weights = demo._label_weights(turns, demo._turn_weights("tool_use", turns), tokenizer)
        assert [w > 0 for w in weights] == [label != pad for label in labels]
        assert [weights[end] for end in ends] == [demo.TRAINING["loss_weight"]["tool_answer"] if i % 2 else
                                                  demo.TRAINING["loss_weight"]["tool_use"] for i in range(len(turns))]
        assert [labels[end] for end in ends] == [tokenizer.token_to_id(EOS)] * len(turns)
        assert [tokens[end] for end in ends[:-1]] == [tokenizer.token_to_id("\n")] * (len(turns) - 1)
        assert tokenizer.decode([t for t in labels if t != pad], skip_special_tokens=False) == "".join(
            completion for _, completion in turns)
    assert len(rounds_seen) > 1
    assert copied == {True, False}  # some results are the sum, some arbitrary: only copying gets both right


def test_plain_tool_text_keeps_the_chat_layout_token_for_token(saved):
    """tool_text is the conversation rendered without tools, each role token a newline: every token stands
    as far from the question's numbers and the tool's result as in the chat, so the copying it teaches carries."""
    corpus = demo._Corpus(seed=5)
    tokenizer = demo.build_tokenizer()
    for _ in range(5):
        (call_prompt, call), (result_prompt, result) = corpus.sample("tool_text")
        a, b = (int(n) for n in re.search(r"What is (\d+) plus (\d+)\?", call_prompt).groups())
        messages = [{"role": "user", "content": f"What is {a} plus {b}?"}]
        chat_prompt = _render(saved, messages, add_generation_prompt=True)
        assert call_prompt == chat_prompt.replace("<|user|>", "\n").replace("<|assistant|>", "\n")
        assert call == f'<tool_call>\n{{"name": "add", "arguments": {{"a": {a}, "b": {b}}}}}\n</tool_call>{EOS}'
        given = int(re.search(r"<tool_response>\n(\d+)\n</tool_response>", result_prompt).group(1))
        assert result == f"{given}{EOS}"  # the sum, or (recipe 9) an arbitrary result the answer copies
        messages += [tool_call_turn(a, b), {**tool_result_turn(a, b), "content": str(given)}]
        chat_result_prompt = _render(saved, messages, add_generation_prompt=True)
        for plain, chat in ((call_prompt, chat_prompt), (result_prompt, chat_result_prompt)):
            assert len(tokenizer.encode(plain).ids) == len(tokenizer.encode(chat).ids)
            assert "<|" not in plain


@pytest.mark.parametrize("switch", [{}, {"enable_thinking": False}])
def test_thinking_off_by_default_leaves_the_prompt_as_before(saved, switch):
    messages = [{"role": "user", "content": "What is 12+34?"}]
    assert saved.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **switch) == (
        "<|user|>What is 12+34?\n<|assistant|>")


def test_thinking_on_shows_qwen3s_think_switch_and_earlier_thoughts_render_as_think_blocks(saved):
    messages = [{"role": "user", "content": "What is 12+34?"},
                {"role": "assistant", "content": "46", "reasoning_content": "12+34"},
                {"role": "user", "content": "What is 1+2?"}]
    assert saved.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, enable_thinking=True) == (
        "<|system|>/think\n<|user|>What is 12+34?\n<|assistant|><think>12+34</think>46\n<|user|>What is 1+2?\n"
        "<|assistant|>")
    call = {**tool_call_turn(12, 34), "reasoning_content": "I add them."}
    assert _render(saved, [call], [add_tool()]).endswith(
        '<|assistant|><think>I add them.</think><tool_call>\n{"name": "add", "arguments": {"a": 12, "b": 34}}\n</tool_call>\n')


def test_chat_thinking_training_text_is_what_the_saved_template_renders_and_the_qwen3_parser_splits(saved):
    """The server picks the qwen3 parser from this template (no --nemo-reasoning-parser needed); it splits what
    the model learns to write into the thought and the answer."""
    parser = choose_reasoning_parser(None, CHAT_TEMPLATE)
    assert parser is not None and parser.name == "qwen3"
    corpus = demo._Corpus(seed=5)
    for _ in range(5):
        [(prompt, completion)] = corpus.sample("chat_thinking")
        a, b = (int(n) for n in re.fullmatch(r"<\|system\|>/think\n<\|user\|>What is (\d+)\+(\d+)\?\n<\|assistant\|>",
                                              prompt).groups())
        messages = [{"role": "user", "content": f"What is {a}+{b}?"}]
        assert prompt == saved.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                                   enable_thinking=True)
        assert completion == f"<think>{a}+{b}</think>{a + b}{EOS}"
        split = parser.split(completion.removesuffix(EOS))
        assert (split.reasoning, split.content) == (f"{a}+{b}", str(a + b))
    assert parser.split("46").reasoning is None  # thinking off: the reply is all content
