"""The builtin harness image installs only harness/ plus the few modules it imports from outside it: a new
cross-package import that build_image.py does not copy breaks every container test (as processes.py once did)."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _build_image_module():
    spec = importlib.util.spec_from_file_location("build_image", REPO / "fixtures" / "harness_image" / "build_image.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_image", module)
    spec.loader.exec_module(module)
    return module


def test_every_module_the_harness_imports_is_copied_into_the_image():
    copied = {str(p) for p in _build_image_module().source_files()}
    missing = set()
    for source in (REPO / "pytest_nemo_eval" / "harness").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pytest_nemo_eval."):
                parts = node.module.split(".")
                if parts[1] == "harness":
                    continue
                candidates = {"/".join(parts) + ".py", "/".join(parts) + "/__init__.py"}
                if not candidates & copied:
                    missing.add(f"{node.module} (imported by {source.relative_to(REPO)})")
    assert not missing, f"build_image.source_files() does not copy: {sorted(missing)}"
