#!/usr/bin/env bash
# Build the docs site (site/) as CI does: `mkdocs build --strict`. The reference pages are generated from
# the code and the hand-written pages checked against it (docsgen/), so a drift fails the build; the
# screenshots are taken anew from a real smoke run on the demo checkpoint (about a minute with the demo
# trained; the tests before it in CI train it). NEMO_EVAL_DOCS_SCREENSHOTS=skip leaves them out (the
# strict build then fails on the missing images): for a quick look at a page, `mkdocs serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] && . .venv/bin/activate
python -c "import mkdocs, material, mkdocstrings_handlers.python" 2>/dev/null \
    || NEMO_EVAL_EXTRAS="${NEMO_EVAL_EXTRAS:+${NEMO_EVAL_EXTRAS},}docs" NEMO_EVAL_SKIP_DOCKER=1 bash scripts/setup.sh
. .venv/bin/activate
export NO_MKDOCS_2_WARNING=1 NEMO_EVAL_DOCS_SCREENSHOTS="${NEMO_EVAL_DOCS_SCREENSHOTS:-fresh}"
start=$SECONDS
mkdocs build --strict "$@"
echo "[docs] site/ built in $((SECONDS - start)) s (open site/index.html)"
