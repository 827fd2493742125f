"""`nemo-eval deploy`: serve a NeMo 2.0 checkpoint behind an OpenAI-compatible API until Ctrl-C/SIGTERM.

Prints exactly one readiness line (READY_PREFIX + URL + model id, see parse_ready_line) once the
endpoint answers; every startup problem is one paragraph on stderr and exit
code 2, with nothing left running.
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING

from pytest_nemo_eval.third_party_warnings import silence_in_this_process

if TYPE_CHECKING:  # the stack pulls in torch, flask and pytriton: imported only when deploying
    from pytest_nemo_eval.serving.stack import ServingStack, StackSettings

READY_PREFIX = "nemo-eval deploy: ready at "
EXIT_BAD_INPUT = 2


def parse_ready_line(line: str) -> tuple[str, str] | None:
    """(url, model id) from output holding the readiness line, else None.

    tritonserver writes to the same stdout and splits its own log lines, so the
    readiness line may follow a fragment of Triton's on the same line: search, do
    not anchor (our line is one write, so it is never split itself).
    """
    start = line.find(READY_PREFIX)
    if start < 0:
        return None
    url, _, rest = line[start + len(READY_PREFIX):].strip().partition(" (model ")
    return url, rest.rpartition(")")[0]


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Serve a NeMo 2.0 checkpoint (megatron-core GPTModel) "
                                     "through PyTriton or Ray Serve behind an OpenAI-compatible HTTP API.")
    parser.add_argument("--nemo-checkpoint", metavar="PATH", help="NeMo 2.0 checkpoint directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port; 0 picks a free one (default 8080)")
    parser.add_argument("--max-batch-size", type=int, default=16, help="most requests decoding together (in-flight batch slots; also Triton's batch limit)")
    parser.add_argument("--max-queue-delay-us", type=int, default=2000,
                        help="Triton dynamic batching: how long a request may wait for others to travel with it")
    parser.add_argument("--tensor-parallel", type=int, default=1, help="tensor parallel size (GPUs)")
    parser.add_argument("--pipeline-parallel", type=int, default=1, help="pipeline parallel size (GPUs)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--serving-backend", "--nemo-serving-backend", dest="backend", choices=("pytriton", "ray"),
                        default="pytriton", help="what runs the model: pytriton (one copy) or ray (Ray Serve replicas)")
    parser.add_argument("--replicas", "--nemo-replicas", type=int, default=1,
                        help="ray: copies of the model behind the one endpoint (default 1)")
    parser.add_argument("--replica-cpus", "--nemo-replica-cpus", type=float, default=1.0,
                        help="ray, on CPU: CPUs Ray reserves for each replica (default 1)")
    parser.add_argument("--ray-address", "--nemo-ray-address", default=None,
                        help="ray: an existing cluster (auto, HOST:PORT, ray://HOST:PORT); default: a private local head")
    parser.add_argument("--tool-parser", "--nemo-tool-parser", default=None,
                        help="tool-call output format (hermes, llama3_json, mistral, pythonic: vLLM's names); "
                             "default: chosen from the checkpoint's chat template")
    parser.add_argument("--reasoning-parser", "--nemo-reasoning-parser", default=None,
                        help="thought/answer split of replies (deepseek_r1, qwen3: vLLM's names; none: off); "
                             "default: chosen from the checkpoint's chat template")
    parser.add_argument("--settings-json", metavar="JSON",
                        help="every setting above as one JSON object (serving.settings.ServeSettings); used by the "
                             "launcher instead of the flags")
    parser.add_argument("--http-threads", type=int, default=32, help="HTTP worker threads (>= concurrent clients)")
    parser.add_argument("--log-level", default="WARNING", help="Python log level of the server (default WARNING)")
    return parser


def _settings(args: argparse.Namespace) -> "StackSettings":
    from pydantic import ValidationError

    from pytest_nemo_eval.serving.stack import StackSettings

    if args.settings_json:
        try:
            return StackSettings.model_validate_json(args.settings_json).model_copy(
                update={"http_threads": args.http_threads})
        except ValidationError as exc:
            raise ValueError(f"--settings-json is not valid: {exc}") from None
    if not args.nemo_checkpoint:
        raise ValueError("--nemo-checkpoint PATH is required (a NeMo 2.0 checkpoint directory).")
    if args.replicas < 1:
        raise ValueError(f"--replicas must be at least 1 (got {args.replicas}).")
    for name in ("max_batch_size", "tensor_parallel", "pipeline_parallel", "http_threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(args, name)}).")
    if args.max_queue_delay_us < 0:
        raise ValueError(f"--max-queue-delay-us must be >= 0 (got {args.max_queue_delay_us}).")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535 (got {args.port}).")
    return StackSettings(checkpoint=args.nemo_checkpoint, host=args.host, port=args.port,
                         max_batch_size=args.max_batch_size, max_queue_delay_us=args.max_queue_delay_us,
                         tensor_parallel=args.tensor_parallel, pipeline_parallel=args.pipeline_parallel,
                         device=args.device, http_threads=args.http_threads, backend=args.backend,
                         replicas=args.replicas, replica_cpus=args.replica_cpus, ray_address=args.ray_address,
                         tool_parser=args.tool_parser, reasoning_parser=args.reasoning_parser)


def _startup_error(exc: BaseException, settings: "StackSettings | None") -> str | None:
    """One paragraph for the errors a user can fix; None for a fault of ours (then the traceback is shown)."""
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
        where = f"{settings.host}:{settings.port}" if settings else "the address asked for"
        return (f"Cannot listen on {where}: {exc.strerror}. Another process holds that port, or the "
                "address is not this machine's; pick another with --port (0 picks a free one) or stop the other "
                "process.")
    if isinstance(exc, ValueError):  # includes checkpoint.errors.CheckpointError, backend.BackendUnavailable
        return str(exc)
    return None


def main(argv: list[str] | None = None, prog: str = "nemo-eval deploy") -> int:
    args = build_parser(prog).parse_args(argv)
    silence_in_this_process()  # megatron-core/torch/PyTriton chatter would bury the deploy log's own lines
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop_requested = threading.Event()
    ready = threading.Event()

    def _request_stop(signum, _frame):
        """Before ready: abort the startup (start() cleans up); after: let the serve loop end."""
        stop_requested.set()
        if not ready.is_set():
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    stack: "ServingStack | None" = None
    settings: "StackSettings | None" = None
    try:
        try:
            from pytest_nemo_eval.serving.stack import ServingStack

            settings = _settings(args)
            stack = ServingStack(settings)
            stack.start()
        except Exception as exc:
            message = _startup_error(exc, settings)
            if message is None:
                raise
            print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
        ready.set()
        print(f"{READY_PREFIX}{stack.url} (model {stack.model_id})", flush=True)
        while not stop_requested.wait(1.0):
            pass
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        if stack is not None:
            stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
