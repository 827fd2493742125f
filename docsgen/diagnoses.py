"""The troubleshooting list: every `Diagnosis:` line the package can print, read from its source at build
time (string literals and f-strings that open with `Diagnosis: `, and the log patterns of
harness/diagnosis.py's `CAUSES`), so a new message appears in the docs without anyone copying it."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PREFIX = "Diagnosis: "


@dataclass(frozen=True)
class Message:
    text: str  # the message as written in the code, `{expr}` where it fills in a value
    where: str  # path:line in the repository


def _template(node: ast.JoinedStr | ast.Constant) -> str:
    if isinstance(node, ast.Constant):
        return str(node.value)
    parts = []
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(str(value.value))
        elif isinstance(value, ast.FormattedValue):
            parts.append("{" + ast.unparse(value.value) + "}")
    return "".join(parts)


def _joined(node: ast.AST) -> ast.JoinedStr | ast.Constant | None:
    """An f-string or a string (implicitly concatenated pieces are one node already)."""
    if isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return node
    return None


def messages(package: Path, repo: Path) -> list[Message]:
    """Every message opening with `Diagnosis: ` in the package's source, in file order."""
    found: list[Message] = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
        for node in ast.walk(tree):
            string = _joined(node)
            if string is None or (isinstance(parents.get(node), ast.JoinedStr)):
                continue
            text = _template(string)
            if text.startswith(PREFIX) and len(text) > len(PREFIX) + 10:
                found.append(Message(text=" ".join(text.split()), where=f"{path.relative_to(repo)}:{string.lineno}"))
    return found


def page_section(package: Path, repo: Path) -> str:
    """The markdown that replaces the troubleshooting page's marker."""
    from pytest_nemo_eval.harness.diagnosis import CAUSES

    out = ["### Harness failures read from the harness's log\n",
           "`pytest_nemo_eval/harness/diagnosis.py` reads a failed harness's log and prints the first cause whose "
           "pattern matches, in this order, as `Diagnosis: <cause>: <fix> (log: \"<the line>\")`:\n",
           "| cause | fix | what in the log |", "|---|---|---|"]
    for cause, pattern, fix in CAUSES:
        out.append(f'| <a id="{_anchor(cause)}"></a>**{cause}** | {_cell(fix)} | `{_cell(pattern.pattern)}` |')
    out += ["| **the harness crashed** | read the exception's line (the last one of the traceback, shown) and the log "
            "tail below it | a Python traceback |", "",
            "### Every other `Diagnosis:` line\n",
            "Each says its cause and its fix; `{...}` is filled in with the run's values.\n"]
    for message in messages(package, repo):
        if "{cause}" in message.text or "the harness crashed" in message.text:
            continue  # the generic forms of the table above
        out.append(f"- `{message.where}`\n\n    > {message.text}\n")
    return "\n".join(out)


def _anchor(text: str) -> str:
    return "diagnosis-" + "-".join(text.lower().split())


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
