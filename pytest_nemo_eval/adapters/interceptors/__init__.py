"""Built-in interceptors, one module each; importing this package registers them."""

from . import (  # noqa: F401
    cache,
    payload_modifier,
    reasoning,
    request_logging,
    response_logging,
    retry,
    stats,
    system_message,
)
