"""`nemo-eval demo-checkpoint [DIR]`: build the demo checkpoint once and print its path.

Only the path goes to stdout (so `"$(nemo-eval demo-checkpoint)"` works in a
shell); training progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys

from ..third_party_warnings import silence_in_this_process
from .demo import CACHE_ENV, DEFAULT_SEED, SEED_ENV, ensure_demo_checkpoint


def main(argv: list[str] | None = None, prog: str = "nemo-eval demo-checkpoint") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument(
        "cache_dir", nargs="?", metavar="DIR",
        help=f"where to cache it (default: ${CACHE_ENV} or ~/.cache/pytest-nemo-eval)",
    )
    parser.add_argument("--seed", type=int, default=None,
                        help=f"training seed (default: ${SEED_ENV} or {DEFAULT_SEED})")
    args = parser.parse_args(argv)
    silence_in_this_process()

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    path = ensure_demo_checkpoint(args.cache_dir, seed=args.seed, progress=progress)
    print(path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
