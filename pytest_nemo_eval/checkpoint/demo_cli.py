"""`nemo-eval demo-checkpoint [DIR]`: build the demo checkpoint once and print its path.

Only the path goes to stdout (so `"$(nemo-eval demo-checkpoint)"` works in a
shell); training progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from .demo import CACHE_ENV, ensure_demo_checkpoint


def main(argv: list[str] | None = None, prog: str = "nemo-eval demo-checkpoint") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument(
        "cache_dir", nargs="?", metavar="DIR",
        help=f"where to cache it (default: ${CACHE_ENV} or ~/.cache/pytest-nemo-eval)",
    )
    parser.add_argument("--seed", type=int, default=1234, help="training seed (default 1234)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*Transformer Engine.*")

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    path = ensure_demo_checkpoint(args.cache_dir, seed=args.seed, progress=progress)
    print(path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
