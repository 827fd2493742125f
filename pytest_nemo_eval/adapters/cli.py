"""`nemo-eval proxy`: run the interceptor proxy in the foreground until Ctrl-C.

Prints exactly one readiness line, `nemo-eval proxy listening on <URL> ...`, so
a parent process (tests, scripts, `ProxyProcess`) knows when and where to connect.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .config import AdapterConfig
from .response_cache import CacheError
from .server import ProxyServer

READY_PREFIX = "nemo-eval proxy listening on "


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Interceptor proxy in front of an OpenAI-compatible endpoint.")
    parser.add_argument("--upstream", required=True, help="model server base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--config", help="adapter config YAML (AdapterConfig keys; each interceptor's options: adapters/interceptors/<key>.py)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: any free port)")
    parser.add_argument("--cache", help="SQLite response cache file (used when the config enables the cache)")
    parser.add_argument("--log-dir", help="directory for request/response JSONL logs (default: a temp dir)")
    parser.add_argument("--api-key-env", help="NAME of the env var holding the upstream API key (never the key itself)")
    parser.add_argument("--threads", type=int, default=64, help="worker threads (default 64)")
    parser.add_argument("--wait-upstream", type=float, metavar="SECONDS",
                        help="before reporting ready, wait up to SECONDS for the upstream to answer")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started this one dies (no orphaned proxies)")
    return parser


def main(argv: list[str] | None = None, prog: str = "nemo-eval proxy") -> int:
    args = build_parser(prog).parse_args(argv)
    # read before the ready line: a parent that dies as soon as it reads that line would otherwise already be
    # gone, and the new parent (init) would be taken for ours: the proxy then never exits (a flaky test showed it)
    parent_pid = os.getppid() if args.exit_with_parent else None
    try:
        config = AdapterConfig.from_yaml(args.config) if args.config else AdapterConfig()
        proxy = ProxyServer(args.upstream, config, host=args.host, port=args.port, cache_path=args.cache,
                            upstream_api_key_env=args.api_key_env, log_dir=args.log_dir, threads=args.threads)
        proxy.start()
    except (ValueError, CacheError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.wait_upstream:
            proxy.wait_for_upstream(args.wait_upstream)
        print(f"{READY_PREFIX}{proxy.url} (upstream {args.upstream}, logs {proxy.log_dir})", flush=True)
        proxy.serve_forever(parent_pid=parent_pid)
    except TimeoutError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
