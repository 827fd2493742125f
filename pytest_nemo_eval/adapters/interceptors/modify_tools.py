"""Modify tools: strip or add properties in the tool schemas of a request's `tools`.

NeMo Evaluator's `modify_tools` interceptor, with its parameter names and
behaviour: for every tool (`{"type": "function", "function": {...}}`, or a bare
function object), in its `parameters` schema's top-level `properties`:

- each name in `strip_properties` is removed, and removed from `required` too;
- each `add_properties` entry (name -> JSON schema) is added when the tool has
  no property of that name (an existing one is kept; strip it as well to
  replace it);
- a tool whose `parameters` has no `properties` object is left alone.

Typical: a harness's tools carry a bookkeeping argument the model should not
see, or a model was trained with an extra argument (`add_properties: {reason:
{type: string}}`). It runs before the cache and request logging, so both see
the tools as the model gets them. Unlike NeMo Evaluator (which warns), a config
that changes nothing is an error: it is a key given by mistake.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from pydantic import model_validator

from ..exchange import ProxyRequest, ProxyResponse
from ..registry import Handler, Interceptor, StrictConfig, register_interceptor

log = logging.getLogger(__name__)


class ModifyToolsConfig(StrictConfig):
    """Edit the request's tool schemas: `strip_properties` removes those properties (and their
    `required` entries) from every tool's `parameters`; `add_properties` adds `{name: schema}`
    where the tool has no property of that name."""

    enabled: bool = True
    strip_properties: list[str] = []
    add_properties: dict[str, dict[str, Any]] = {}

    @model_validator(mode="after")
    def _changes_something(self) -> "ModifyToolsConfig":
        if self.enabled and not self.strip_properties and not self.add_properties:
            raise ValueError("modify_tools changes nothing: give strip_properties and/or add_properties "
                             "(or enabled: false)")
        if any(not name for name in [*self.strip_properties, *self.add_properties]):
            raise ValueError("property names must not be empty")
        return self


def modify_tools(tools: list, strip: list[str], add: dict[str, dict[str, Any]]) -> tuple[list, int]:
    """(tools with the changes applied, how many properties were removed or added). `tools` is not changed."""
    tools = copy.deepcopy(tools)
    changes = 0
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        function = tool.get("function") or tool
        parameters = function.get("parameters") if isinstance(function, dict) else None
        properties = parameters.get("properties") if isinstance(parameters, dict) else None
        if not isinstance(properties, dict):
            continue
        required = parameters.get("required")
        for name in strip:
            if name in properties:
                del properties[name]
                changes += 1
            if isinstance(required, list) and name in required:
                required.remove(name)
        for name, schema in add.items():
            if name not in properties:
                properties[name] = copy.deepcopy(schema)
                changes += 1
    return tools, changes


@register_interceptor("modify_tools")
class ModifyToolsInterceptor(Interceptor):
    config_model = ModifyToolsConfig
    order = 35  # a request change like system_message (30) and payload_modifier (40), before the cache keys it
    config: ModifyToolsConfig

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        body = request.json
        if body is not None and isinstance(body.get("tools"), list) and body["tools"]:
            tools, changes = modify_tools(body["tools"], self.config.strip_properties, self.config.add_properties)
            if changes:
                request.set_json({**body, "tools": tools})
                request.meta["tool_schema_changes"] = changes
        return call_next(request)
