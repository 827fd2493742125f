"""The assistant message of a chat reply, plain or streamed, as vLLM shapes it.

- plain (no tools, or tool_choice "none"): the generated text is the content;
- auto: the deployment's tool parser reads the output (special tokens written out, since some formats start
  with one: `[TOOL_CALLS]`, `<|python_tag|>`); found calls become `message.tool_calls` with
  `finish_reason: "tool_calls"`, the text before them the content (or null);
- named: the constrained output is the arguments of the named function (`finish_reason` stays "stop", as
  OpenAI and vLLM answer a forced function); required: a JSON array of {name, parameters}, "tool_calls".
A call that was started but not finished, or does not parse, is never dropped: the raw output is the content
and vLLM's `stop_reason` says why (`tool_call_incomplete` / `tool_call_invalid`), which the proxy counts.

Streaming sends the role first, content as it is settled (text that may still become a call start is held),
then per call a delta with index, id, type and name, then one with its arguments, then the finish.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pytest_nemo_eval.serving.generation import GenerationDelta, GenerationResult, TokenLogprob
from pytest_nemo_eval.serving.token_text import TokenText
from pytest_nemo_eval.serving.tool_parsers import ParsedCall, ParsedOutput, ToolParser
from pytest_nemo_eval.serving.tool_parsers.base import INCOMPLETE, INVALID


@dataclass
class ChatReply:
    content: str | None
    calls: list[dict[str, Any]] = field(default_factory=list)  # OpenAI tool_calls, arguments as JSON strings
    finish_reason: str = "stop"
    stop_reason: str | None = None

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.calls:
            message["tool_calls"] = self.calls
        return message


class ReplyShaper:
    """Turns a request's generated output into its reply; one per request (its choices share it)."""

    def __init__(self, body: Any, parser: ToolParser | None, text: TokenText, eos_id: int) -> None:
        self.mode: str = body.tool_mode()
        self.parser = parser
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
        if self.mode == "plain":
            return ChatReply(self.echo_prefix + result.text, finish_reason=result.finish_reason)
        if self.mode == "auto":
            return self._from_parsed(self.parser.parse(self.raw(result.output_ids)), result.finish_reason)
        return self._forced(result.text, result.finish_reason)

    def _call(self, call: ParsedCall) -> dict[str, Any]:
        return {"id": call.id or self.parser_id(), "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json()}}

    def parser_id(self) -> str:
        return self.parser.new_call_id() if self.parser is not None else f"chatcmpl-tool-{_hex()}"

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


def _hex() -> str:
    import secrets

    return secrets.token_hex(16)


class ChoiceStream:
    """One choice's streamed deltas as chat chunk choices (zero or more per engine delta)."""

    def __init__(self, shaper: ReplyShaper, logprobs: bool) -> None:
        self.shaper, self.logprobs = shaper, logprobs
        self.started = False
        self.ids: list[int] = []
        self.generated = ""  # plain text so far (named / required)
        self.sent = 0  # raw characters already sent as content (auto)
        self.calling = False
        self.pending: list[TokenLogprob] = []

    def feed(self, index: int, delta: GenerationDelta) -> list[dict[str, Any]]:
        self.pending += delta.logprobs or []
        mode = self.shaper.mode
        if mode == "plain":
            prefix = "" if self.started else self.shaper.echo_prefix
            return [self._choice(index, {"content": prefix + delta.text}, delta.finish_reason)]
        self.ids += delta.output_ids
        self.generated += delta.text
        if delta.finish_reason is None:
            out = self._settled_content(index) if mode == "auto" else None
            if out is not None:
                return [out]
            return [self._choice(index, {"content": ""}, None)] if not self.started else []
        reply = (self.shaper._from_parsed(self.shaper.parser.parse(self._raw()), delta.finish_reason)
                 if mode == "auto" else self.shaper._forced(self.generated, delta.finish_reason))
        return self._finish(index, reply)

    def _raw(self) -> str:
        return self.shaper.raw(self.ids)

    def _settled_content(self, index: int) -> dict[str, Any] | None:
        if self.calling:
            return None
        raw = self._raw()
        parser = self.shaper.parser
        start = parser.call_start(raw)
        if start is not None:
            self.calling = True
            upto = start
        else:
            upto = len(raw) - max(parser.held_back(raw), len(raw) - len(raw.rstrip("\ufffd")))
        if upto <= self.sent:
            return None
        piece, self.sent = raw[self.sent:upto], upto
        return self._choice(index, {"content": piece}, None)

    def _finish(self, index: int, reply: ChatReply) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if reply.calls:
            unsent = (reply.content or "")[self.sent:] if self.shaper.mode == "auto" else ""
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
        content = reply.content or ""
        already = self.sent if self.shaper.mode == "auto" else 0
        out.append(self._choice(index, {"content": content[already:]}, reply.finish_reason, reply.stop_reason))
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
