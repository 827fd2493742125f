"""Open an HTML file in a real headless browser (Debian's `chromium`, installed by scripts/setup.sh):
the DOM after scripts ran, every console message, and a screenshot. External hosts resolve to
nothing, so a page that needs the network shows it as console errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

CONSOLE = re.compile(r":CONSOLE[:(]\d+\)?\] (.*)")


@dataclass
class Page:
    dom: str
    console: list[str]
    screenshot: Path


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no headless browser: install Debian's chromium (scripts/setup.sh does, as root)")
    return path


def open_page(html: Path, screenshot: Path, *, width: int = 1280, height: int = 2400) -> Page:
    common = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
              "--enable-logging=stderr", "--v=0", f"--user-data-dir={screenshot.parent / '.chromium-profile'}"]
    url = html.resolve().as_uri()
    dump = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0, dump.stderr[-2000:]
    shot = subprocess.run([*common, f"--screenshot={screenshot}", f"--window-size={width},{height}", url],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    console = [m.group(1) for line in (dump.stderr + shot.stderr).splitlines() if (m := CONSOLE.search(line))]
    return Page(dom=dump.stdout, console=console, screenshot=screenshot)
