"""Screenshots for the docs, made by the docs build from a real run: the smoke suite on the demo checkpoint,
twice (a baseline, then a candidate gated against it with `--nemo-baseline`), then headless Chromium (Debian's
`chromium`, which scripts/setup.sh installs for the HTML report tests) photographs the candidate's HTML report,
its terminal summary and its baseline comparison. About a minute with the demo already trained (the test run
before the docs step trains it); the second run answers from the proxy cache."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHOTS = ("html-report.png", "terminal-summary.png", "baseline-comparison.png")
LIMIT_SAMPLES = "12"  # the paired baseline test needs 10 shared items (paired.MIN_PAIRED_ITEMS)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Everything before the per-benchmark sections except the scores table (which has the `vs baseline` column).
_BASELINE_ONLY = """<script>
for (const id of ["provenance"]) { const t = document.getElementById(id); t.previousElementSibling.remove(); t.remove(); }
const plot = document.querySelector(".plot"); if (plot) { plot.previousElementSibling.remove(); plot.remove(); }
document.querySelectorAll("details").forEach(d => d.remove());
</script></body>"""


class ScreenshotError(RuntimeError):
    """The run or the browser failed: the docs build stops with what they printed."""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise ScreenshotError("No headless browser for the docs' screenshots: install Debian's `chromium` "
                              "(scripts/setup.sh does, as root), or build with NEMO_EVAL_DOCS_SCREENSHOTS=skip.")
    return found


def _pytest(repo: Path, work: Path, name: str, *extra: str) -> tuple[str, str]:
    command = [sys.executable, "-m", "pytest", "suites/smoke.yaml", "--nemo-checkpoint=demo",
               f"--nemo-limit-samples={LIMIT_SAMPLES}", f"--nemo-output-dir={work / 'nemo-eval'}",
               f"--junitxml={work / name / 'gate.xml'}", "-p", "no:cacheprovider", "--color=no", *extra]
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "COLUMNS": "110"})
    if done.returncode not in (0, 1):  # 1: a benchmark missed its threshold, which a screenshot may show
        raise ScreenshotError(f"The docs' demo run failed (exit {done.returncode}): {' '.join(command)}\n"
                              + (done.stdout + done.stderr)[-4000:])
    shown = ["pytest", *command[3:]]  # as a user types it, paths relative to the repository
    return done.stdout, " ".join(shown).replace(f"{repo}/", "")


def _shoot(page: Path, png: Path, width: int, height: int) -> None:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
               "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
               f"--user-data-dir={png.parent / '.chromium-profile'}", f"--screenshot={png}",
               f"--window-size={width},{height}", page.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not png.is_file():
        raise ScreenshotError(f"chromium could not photograph {page}: {done.stderr[-2000:]}")


def terminal_page(output: str, command: str) -> str:
    """The run's terminal output from the nemo-eval scores table on, as a dark terminal would show it."""
    text = _ANSI.sub("", output)
    start = text.find("nemo-eval scores")
    start = text.rfind("\n", 0, start) + 1 if start >= 0 else 0
    return ("<!DOCTYPE html><meta charset='utf-8'><body style='margin:0;background:#1e1e1e'>"
            "<pre style='margin:0;padding:14px;color:#e0e0e0;font:13px/1.35 monospace'>"
            + html.escape(f"$ {command}\n...\n" + text[start:].rstrip()) + "</pre></body>")


def make(repo: Path, out_dir: Path) -> dict[str, float]:
    """Run the demo twice and write the three PNGs into `out_dir`; returns the seconds each step took."""
    work = repo / ".cache" / "docs-run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    took: dict[str, float] = {}
    start = time.monotonic()
    _pytest(repo, work, "baseline")
    took["baseline run"] = time.monotonic() - start
    start = time.monotonic()
    output, command = _pytest(repo, work, "candidate", f"--nemo-baseline={work / 'baseline' / 'gate.xml'}")
    took["candidate run"] = time.monotonic() - start
    start = time.monotonic()
    report = work / "candidate" / "gate.html"
    _shoot(report, out_dir / "html-report.png", 1280, 1100)
    terminal = work / "terminal.html"
    terminal.write_text(terminal_page(output, command), encoding="utf-8")
    lines = terminal.read_text(encoding="utf-8").count("\n") + 2
    _shoot(terminal, out_dir / "terminal-summary.png", 1000, 28 + 18 * lines)
    comparison = work / "candidate" / "comparison.html"
    comparison.write_text(report.read_text(encoding="utf-8").replace("</body>", _BASELINE_ONLY, 1), encoding="utf-8")
    _shoot(comparison, out_dir / "baseline-comparison.png", 1280, 900)
    shutil.rmtree(out_dir / ".chromium-profile", ignore_errors=True)
    took["screenshots"] = time.monotonic() - start
    return took
