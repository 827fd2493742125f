"""`nemo-eval` command: one entry point, each subcommand owned by its package."""

from __future__ import annotations

import sys

SUBCOMMANDS = {
    "deploy": ("pytest_nemo_eval.serving.deploy_cli", "Serve a NeMo 2.0 checkpoint behind an OpenAI-compatible API."),
    "demo-checkpoint": ("pytest_nemo_eval.checkpoint.demo_cli", "Build (once) and print the demo checkpoint's path."),
    "proxy": ("pytest_nemo_eval.adapters.cli", "Run the interceptor proxy in front of an OpenAI-compatible endpoint."),
}


def _usage() -> str:
    lines = ["usage: nemo-eval <command> [options]", "", "commands:"]
    lines += [f"  {name:<16} {help_text}" for name, (_, help_text) in SUBCOMMANDS.items()]
    lines += ["", "Run `nemo-eval <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"nemo-eval: unknown command {command!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, _ = SUBCOMMANDS[command]
    module = __import__(module_name, fromlist=["main"])
    return int(module.main(rest, prog=f"nemo-eval {command}") or 0)


if __name__ == "__main__":
    sys.exit(main())
