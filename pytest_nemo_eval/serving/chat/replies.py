"""The assistant message of a chat reply, plain or streamed, as vLLM shapes it.

With a reasoning parser (serving/reasoning_parsers/), the output is first split into the thought
(`message.reasoning_content`, and vLLM's newer name `reasoning`) and the answer; everything below reads the
answer only. A reply cut off inside its thought has empty content and `finish_reason: "length"`, so a
half-thought is never scored as an answer. `include_reasoning: false` leaves the thought out.

Then, by tool mode:
- plain (no tools, or tool_choice "none"): the answer is the content;
- auto: the deployment's tool parser reads the answer (special tokens written out, since some formats start
  with one: `[TOOL_CALLS]`, `<|python_tag|>`); found calls become `message.tool_calls` with
  `finish_reason: "tool_calls"`, the text before them the content (or null);
- named: the constrained output is the arguments of the named function (`finish_reason` stays "stop", as
  OpenAI and vLLM answer a forced function); required: a JSON array of {name, parameters}, "tool_calls".
A call that was started but not finished, or does not parse, is never dropped: the raw answer is the content
and vLLM's `stop_reason` says why (`tool_call_incomplete` / `tool_call_invalid`), which the proxy counts.

Streaming sends the role first, then the thought (`delta.reasoning_content`), then the answer as it is settled
(text that may still become a marker or a call start is held), then per call a delta with index, id, type and
name, then one with its arguments, then the finish.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from pytest_nemo_eval.serving.generation import GenerationDelta, GenerationResult, TokenLogprob
from pytest_nemo_eval.serving.reasoning_parsers import ReasoningParser, ReasoningSplit
from pytest_nemo_eval.serving.token_text import TokenText
from pytest_nemo_eval.serving.tool_parsers import ParsedCall, ParsedOutput, ToolParser
from pytest_nemo_eval.serving.tool_parsers.base import INCOMPLETE, INVALID


@dataclass
class ChatReply:
    content: str | None
    calls: list[dict[str, Any]] = field(default_factory=list)  # OpenAI tool_calls, arguments as JSON strings
    finish_reason: str = "stop"
    stop_reason: str | None = None
    reasoning: str | None = None

    def message(self, include_reasoning: bool = True) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.reasoning is not None and include_reasoning:
            message["reasoning_content"] = message["reasoning"] = self.reasoning
        if self.calls:
            message["tool_calls"] = self.calls
        return message


class ReplyShaper:
    """Turns a request's generated output into its reply; one per request (its choices share it)."""

    def __init__(self, body: Any, parser: ToolParser | None, text: TokenText, eos_id: int,
                 reasoning: ReasoningParser | None = None) -> None:
        self.mode: str = body.tool_mode()
        self.parser = parser
        # a forced call's output is constrained JSON from its first token: there is no thought to split
        self.reasoning = reasoning if self.mode in ("plain", "auto") else None
        self.include_reasoning = body.include_reasoning
        self.text = text
        self.eos_id = eos_id
        self.parallel = body.parallel_tool_calls is not False
        self.function_name = body.tool_choice.function.name if self.mode == "named" else None
        last = body.messages[-1]
        self.echo_prefix = last.text() if body.echo and last.role == "assistant" else ""

    def raw(self, ids: list[int]) -> str:
        """The output with special tokens written out, less the EOS it ended on."""
        if ids and ids[-1] == self.eos_id:
            ids = ids[:-1]
        return self.text.with_specials(ids)

    def reply(self, result: GenerationResult) -> ChatReply:
        if self.mode in ("named", "required"):
            return self._forced(result.text, result.finish_reason)
        if self.reasoning is None:
            answer = ReasoningSplit(None, self.raw(result.output_ids) if self.mode == "auto" else result.text)
        else:
            answer = self.reasoning.split(self.raw(result.output_ids))
        return self.answer(answer, result.finish_reason)

    def answer(self, split: ReasoningSplit, finish_reason: str) -> ChatReply:
        """The reply for an output already split into thought and answer."""
        if not split.ended:  # stopped inside the thought: no answer at all
            return ChatReply("", finish_reason=finish_reason, reasoning=split.reasoning)
        if self.mode == "plain":
            reply = ChatReply(self.echo_prefix + split.content, finish_reason=finish_reason)
        else:
            reply = self._from_parsed(self.parser.parse(split.content), finish_reason)
        reply.reasoning = split.reasoning
        return reply

    def reasoning_tokens(self, ids: list[int]) -> int:
        """How many of the output tokens belong to the thought (its markers included)."""
        if self.reasoning is None:
            return 0
        split = self.reasoning.split(self.raw(ids))
        if split.reasoning is None:
            return 0
        if not split.ended:
            return len(ids)
        low, high = 1, len(ids)  # the first prefix whose text closes the thought (monotone in the length)
        while low < high:
            middle = (low + high) // 2
            if self.reasoning.split(self.raw(ids[:middle])).ended:
                high = middle
            else:
                low = middle + 1
        return low

    def _call(self, call: ParsedCall) -> dict[str, Any]:
        call_id = call.id or (self.parser.new_call_id() if self.parser is not None
                              else f"chatcmpl-tool-{secrets.token_hex(16)}")
        return {"id": call_id, "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json()}}

    def _from_parsed(self, parsed: ParsedOutput, finish_reason: str) -> ChatReply:
        if parsed.error:
            return ChatReply(parsed.content, finish_reason=finish_reason, stop_reason=parsed.error)
        if not parsed.calls:
            return ChatReply(parsed.content or "", finish_reason=finish_reason)
        calls = parsed.calls if self.parallel else parsed.calls[:1]  # vLLM: parallel_tool_calls false keeps one
        return ChatReply(parsed.content, [self._call(c) for c in calls], finish_reason="tool_calls")

    def _forced(self, text: str, finish_reason: str) -> ChatReply:
        """named / required: the output was constrained to JSON; a cut-off one is reported, not guessed."""
        try:
            value = json.loads(text)
        except ValueError:
            return ChatReply(text, finish_reason=finish_reason, stop_reason=INCOMPLETE)
        if self.mode == "named":
            if not isinstance(value, dict):
                return ChatReply(text, finish_reason=finish_reason, stop_reason=INVALID)
            return ChatReply("", [self._call(ParsedCall(self.function_name, value))], finish_reason=finish_reason)
        if not isinstance(value, list) or not all(isinstance(v, dict) and isinstance(v.get("name"), str)
                                                  and isinstance(v.get("parameters", {}), dict) for v in value):
            return ChatReply(text, finish_reason=finish_reason, stop_reason=INVALID)
        calls = [self._call(ParsedCall(v["name"], v.get("parameters", {}))) for v in value]
        return ChatReply("", calls, finish_reason="tool_calls" if finish_reason == "stop" else finish_reason)

    def stream(self, logprobs: bool) -> "ChoiceStream":
        return ChoiceStream(self, logprobs)


class ChoiceStream:
    """One choice's streamed deltas as chat chunk choices (zero or more per engine delta)."""

    def __init__(self, shaper: ReplyShaper, logprobs: bool) -> None:
        self.shaper, self.logprobs = shaper, logprobs
        self.started = False
        self.ids: list[int] = []
        self.generated = ""  # plain text so far (named / required)
        self.sent_reasoning = 0  # characters of the thought already sent
        self.sent = 0  # characters of the answer already sent as content
        self.calling = False
        self.echoed = False  # echo: the last message's content goes before the first piece of the answer
        self.pending: list[TokenLogprob] = []

    @property
    def buffered(self) -> bool:
        """Plain replies without a reasoning parser stream the engine's text as it comes; others are re-read."""
        return self.shaper.mode != "plain" or self.shaper.reasoning is not None

    def feed(self, index: int, delta: GenerationDelta) -> list[dict[str, Any]]:
        self.pending += delta.logprobs or []
        shaper = self.shaper
        if not self.buffered:
            return [self._choice(index, {"content": self._echo() + delta.text}, delta.finish_reason)]
        self.ids += delta.output_ids
        self.generated += delta.text
        if delta.finish_reason is not None:
            if shaper.mode in ("named", "required"):
                return self._finish(index, shaper._forced(self.generated, delta.finish_reason))
            raw = shaper.raw(self.ids)
            split = shaper.reasoning.split(raw) if shaper.reasoning is not None else ReasoningSplit(None, raw)
            return self._finish(index, shaper.answer(split, delta.finish_reason))
        out: list[dict[str, Any]] = []
        if shaper.mode in ("plain", "auto"):
            raw = shaper.raw(self.ids)
            split = shaper.reasoning.partial(raw) if shaper.reasoning is not None else ReasoningSplit(None, raw)
            if split.reasoning and len(split.reasoning) > self.sent_reasoning and shaper.include_reasoning:
                piece, self.sent_reasoning = split.reasoning[self.sent_reasoning:], len(split.reasoning)
                out.append(self._choice(index, {"reasoning_content": piece, "reasoning": piece}, None))
            if split.ended:
                settled = self._settled_content(index, split.content)
                if settled is not None:
                    out.append(settled)
        if not out and not self.started:
            out.append(self._choice(index, {"content": ""}, None))
        return out

    def _settled_content(self, index: int, answer: str) -> dict[str, Any] | None:
        if self.calling:
            return None
        parser = self.shaper.parser if self.shaper.mode == "auto" else None
        start = parser.call_start(answer) if parser is not None else None
        if start is not None:
            self.calling = True
            upto = start
        else:
            held = parser.held_back(answer) if parser is not None else 0
            upto = len(answer) - max(held, len(answer) - len(answer.rstrip("\ufffd")))
        if upto <= self.sent:
            return None
        piece, self.sent = answer[self.sent:upto], upto
        return self._choice(index, {"content": self._echo() + piece}, None)

    def _echo(self) -> str:
        if self.echoed or self.shaper.mode != "plain":
            return ""
        self.echoed = True
        return self.shaper.echo_prefix

    def _finish(self, index: int, reply: ChatReply) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if reply.reasoning and len(reply.reasoning) > self.sent_reasoning and self.shaper.include_reasoning:
            piece = reply.reasoning[self.sent_reasoning:]
            out.append(self._choice(index, {"reasoning_content": piece, "reasoning": piece}, None))
        content = reply.content or ""
        if self.shaper.mode == "plain" and self.shaper.echo_prefix and content.startswith(self.shaper.echo_prefix):
            content = content[len(self.shaper.echo_prefix):]
        unsent = content[self.sent:] if self.shaper.mode in ("plain", "auto") else content
        if reply.content:
            unsent = self._echo() + unsent
        if reply.calls:
            if unsent:
                out.append(self._choice(index, {"content": unsent}, None))
            for i, call in enumerate(reply.calls):
                function = call["function"]
                out.append(self._choice(index, {"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                                                "function": {"name": function["name"],
                                                                             "arguments": ""}}]}, None))
                out.append(self._choice(index, {"tool_calls": [{"index": i,
                                                                "function": {"arguments": function["arguments"]}}]},
                                        None))
            out.append(self._choice(index, {}, reply.finish_reason, reply.stop_reason))
            return out
        out.append(self._choice(index, {"content": unsent}, reply.finish_reason, reply.stop_reason))
        return out

    def _choice(self, index: int, delta: dict[str, Any], finish_reason: str | None,
                stop_reason: str | None = None) -> dict[str, Any]:
        if not self.started:
            self.started = True
            delta = {"role": "assistant", **delta}
        logprobs = None
        if self.logprobs:
            logprobs, self.pending = chat_logprobs(self.pending), []
        choice: dict[str, Any] = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        if stop_reason is not None:
            choice["stop_reason"] = stop_reason
        return choice


def chat_logprobs(entries: list[TokenLogprob]) -> dict[str, list]:
    return {"content": [{"token": lp.token, "logprob": lp.logprob, "bytes": list(lp.token.encode()),
                         "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())}
                                          for t, v in lp.top.items()]}
                        for lp in entries]}
