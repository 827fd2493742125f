"""What a chat request constrains its output to: `response_format`, vLLM's `guided_*` fields and
`structured_outputs`, or a tool choice that forces a call (`required`, a named function), as one
StructuredOutput for the engine's token mask. At most one source may constrain a request.

As vLLM does: a named function constrains the output to that function's `parameters` schema (the output is
the arguments object); `required` to a JSON array of `{"name", "parameters"}` objects, one of the offered
functions each, at least one item (at most one when `parallel_tool_calls` is false).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pytest_nemo_eval.serving.generation import StructuredOutput

from .messages import NamedToolChoice, ToolDefinition

ANY_OBJECT: dict[str, Any] = {"type": "object"}


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=lambda: dict(ANY_OBJECT), alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`: text, JSON mode, or a JSON schema."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StructuredOutputsParams(BaseModel):
    """vLLM's newer `structured_outputs` field (one of its keys set)."""

    model_config = ConfigDict(extra="forbid")

    json_: dict[str, Any] | str | None = Field(default=None, alias="json")
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    json_object: bool | None = None


def _schema(value: dict[str, Any] | str, param: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        raise ValueError(f"`{param}` must be a JSON schema (an object, or a string of one)") from None
    if not isinstance(decoded, dict):
        raise ValueError(f"`{param}` must be a JSON schema object")
    return decoded


def requested_constraint(body: Any) -> tuple[str, StructuredOutput] | None:
    """(the field that asked, the constraint) from response_format / guided_* / structured_outputs, or None.
    ValueError names the field when two ask at once or one is malformed."""
    found: list[tuple[str, StructuredOutput]] = []
    fmt: ResponseFormat | None = body.response_format
    if fmt is not None and fmt.type == "json_object":
        found.append(("response_format", StructuredOutput(json_schema=dict(ANY_OBJECT))))
    elif fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None:
            raise ValueError("`response_format` of type json_schema needs a `json_schema` object with a `schema`")
        found.append(("response_format", StructuredOutput(json_schema=fmt.json_schema.schema_)))
    if body.guided_json is not None:
        found.append(("guided_json", StructuredOutput(json_schema=_schema(body.guided_json, "guided_json"))))
    if body.guided_regex is not None:
        found.append(("guided_regex", StructuredOutput(regex=body.guided_regex)))
    if body.guided_choice is not None:
        found.append(("guided_choice", StructuredOutput(choice=body.guided_choice)))
    if body.guided_grammar is not None:
        found.append(("guided_grammar", StructuredOutput(grammar=body.guided_grammar)))
    so: StructuredOutputsParams | None = body.structured_outputs
    if so is not None:
        kinds = {"json": so.json_, "regex": so.regex, "choice": so.choice, "grammar": so.grammar,
                 "json_object": so.json_object or None}
        given = [k for k, v in kinds.items() if v is not None]
        if len(given) != 1:
            raise ValueError(f"`structured_outputs` sets exactly one of json, regex, choice, grammar, json_object "
                             f"(got {given or 'none'})")
        kind = given[0]
        spec = {"json": lambda: StructuredOutput(json_schema=_schema(so.json_, "structured_outputs.json")),
                "regex": lambda: StructuredOutput(regex=so.regex),
                "choice": lambda: StructuredOutput(choice=so.choice),
                "grammar": lambda: StructuredOutput(grammar=so.grammar),
                "json_object": lambda: StructuredOutput(json_schema=dict(ANY_OBJECT))}[kind]()
        found.append(("structured_outputs", spec))
    if len(found) > 1:
        raise ValueError(f"{' and '.join(f'`{name}`' for name, _ in found)} both constrain the output; send one")
    if found and found[0][1].choice is not None and not found[0][1].choice:
        raise ValueError(f"`{found[0][0]}` offers no choice; send at least one string")
    return found[0] if found else None


def tool_constraint(tools: list[ToolDefinition], choice: Any, parallel: bool | None) -> StructuredOutput | None:
    """The output constraint of a forced tool call, or None for none/auto."""
    if isinstance(choice, NamedToolChoice):
        tool = next(t for t in tools if t.function.name == choice.function.name)
        return StructuredOutput(json_schema=tool.function.parameters or dict(ANY_OBJECT))
    if choice != "required":
        return None
    items = [{"type": "object",
              "properties": {"name": {"type": "string", "enum": [t.function.name]},
                             "parameters": t.function.parameters or dict(ANY_OBJECT)},
              "required": ["name", "parameters"]} for t in tools]
    array: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": items}}
    if parallel is False:
        array["maxItems"] = 1
    return StructuredOutput(json_schema=array)
