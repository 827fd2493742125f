"""Interceptor proxy between harnesses and the model (flask app on waitress).

Public API: `ProxyServer`, `ProxyStats`, `AdapterConfig` (+ one config model per
interceptor, defined in its module under `interceptors/`), `register_interceptor`
/ `Interceptor` for user interceptors, and the HTTP helpers in `client` for
processes that talk to a proxy they did not start.
"""

from .config import AdapterConfig, CustomInterceptor
from .exchange import ProxyRequest, ProxyResponse
from .interceptors.cache import CacheConfig
from .interceptors.chat_template_kwargs import ChatTemplateKwargsConfig
from .interceptors.finish_reason import FinishReasonConfig
from .interceptors.modify_tools import ModifyToolsConfig
from .interceptors.payload_modifier import PayloadModifierConfig
from .interceptors.reasoning import ReasoningConfig
from .interceptors.reasoning_replay import ReasoningReplayConfig
from .interceptors.request_logging import LoggingConfig
from .interceptors.retry import RetryConfig
from .interceptors.system_message import SystemMessageConfig
from .registry import Interceptor, register_interceptor
from .server import ProxyServer
from .stats import ProxyStats

__all__ = [
    "AdapterConfig", "CacheConfig", "ChatTemplateKwargsConfig", "CustomInterceptor", "FinishReasonConfig", "Interceptor",
    "LoggingConfig", "ModifyToolsConfig", "PayloadModifierConfig", "ProxyRequest", "ProxyResponse", "ProxyServer",
    "ProxyStats", "ReasoningConfig", "ReasoningReplayConfig", "RetryConfig",
    "SystemMessageConfig", "register_interceptor",
]
