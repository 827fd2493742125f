"""Reference pages generated from the code at build time, so they cannot drift from it: the suite schema
(pydantic models), the options table, the interceptor registry, the eval-factory harness table, the JUnit
property names and the CLIs' help. Each function returns a page's markdown."""

from __future__ import annotations

import contextlib
import io
import os
import types
import typing
from typing import Any, Callable, Iterator

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

GENERATED_NOTE = "<!-- generated at build time by docsgen/references.py from {source}: do not edit -->\n\n"


def _type_name(annotation: Any) -> str:
    """A YAML reader's name for a field type: `"a" | "b"` for a Literal, `list[str]`, a model's name."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (list, tuple, set):
        return f"list[{', '.join(_type_name(a) for a in args if a is not Ellipsis)}]"
    if origin is dict:
        return f"map[{_type_name(args[0])}, {_type_name(args[1])}]"
    if isinstance(annotation, type):
        return {"str": "string", "float": "number", "int": "integer", "bool": "boolean", "Any": "any"}.get(
            annotation.__name__, annotation.__name__)
    return str(annotation).replace("typing.", "")


def _constraints(field: FieldInfo) -> str:
    """`> 0`, `<= 1`, `pattern ...`: pydantic's metadata on the field, as written in suite.py."""
    words = []
    for meta in field.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("min_length", "at least"),
                           ("pattern", "matches")):
            value = getattr(meta, attr, None)
            if value is not None:
                words.append(f"{sign} `{value}`")
    return ", ".join(words)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True) if field.default is PydanticUndefined else field.default
    if isinstance(value, BaseModel):
        return "(its defaults)"
    return f"`{value!r}`" if value not in (None, "") else ("`null`" if value is None else '`""`')


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def model_table(model: type[BaseModel], anchor_prefix: str) -> str:
    """One row per field, each with an anchor `#<prefix>-<field>` other pages can link."""
    rows = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    comments = field_comments(model)
    for name, field in model.model_fields.items():
        anchor = f'<a id="{anchor_prefix}-{name}"></a>'
        rows.append(f"| {anchor}`{name}` | {_cell(_type_name(field.annotation))} | {_cell(_default(field))} | "
                    f"{_cell(_constraints(field))} | {_cell(field.description or comments.get(name, ''))} |")
    return "\n".join(rows) + "\n"


def suite_page() -> str:
    from pytest_nemo_eval import suite

    out = [GENERATED_NOTE.format(source="pytest_nemo_eval/suite.py"), "# Suite schema\n",
           "A suite is a YAML file validated by the pydantic models of `pytest_nemo_eval/suite.py`; this page "
           "is generated from them. Unknown keys are errors naming the file, line and field. Every key is used "
           "in `suites/smoke.yaml` or `suites/release.yaml`.\n"]
    models: list[tuple[str, type[BaseModel], str]] = [
        ("Suite (the file)", suite.Suite, "suite"),
        ("defaults", suite.SuiteDefaults, "defaults"),
        ("benchmarks[]", suite.Benchmark, "benchmark"),
        ("thresholds.&lt;metric&gt;", suite.Threshold, "threshold"),
        ("judge (an endpoint)", suite.JudgeEndpoint, "judge"),
    ]
    # models other helpers add to suite.py (e.g. a gate policy) appear here once a field refers to them
    seen = {m for _, m, _ in models}
    for _, model, _ in list(models):
        for nested in _nested_models(model):
            if nested not in seen:
                seen.add(nested)
                models.append((nested.__name__, nested, nested.__name__.lower()))
    for title, model, prefix in models:
        doc = " ".join((model.__doc__ or "").split())
        out += [f"## {title}\n", f"`{model.__name__}`: {doc}\n" if doc else "", model_table(model, prefix)]
    return "\n".join(out)


def _nested_models(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            ann = stack.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                yield ann
            stack.extend(typing.get_args(ann))


def option_anchor(name: str) -> str:
    return f"nemo-{name}"


def options_page() -> str:
    from pytest_nemo_eval.runner import options

    out = [GENERATED_NOTE.format(source="pytest_nemo_eval/runner/options.py"), "# Options, ini keys, environment\n",
           "Every setting of the plugin is one row of `SETTINGS`/`FLAGS` in `pytest_nemo_eval/runner/options.py`: "
           "an option `--nemo-<name>`, an ini key `nemo_<name>` (in `pytest.ini`, `pyproject.toml`'s "
           "`[tool.pytest.ini_options]`, ...) and an environment variable `NEMO_EVAL_<NAME>`. The option wins over "
           "the environment, the environment over the ini file.\n",
           "| option | ini key | environment | values | meaning |", "|---|---|---|---|---|"]
    for name, help_text, choices in options.SETTINGS:
        values = " \\| ".join(f"`{c}`" for c in choices) if choices else "a value"
        out.append(f'| <a id="{option_anchor(name)}"></a>`--nemo-{name}` | `nemo_{options.dest_name(name)}` | '
                   f"`{options.env_name(name)}` | {values} | {_cell(help_text)} |")
    for name, help_text in options.FLAGS:
        out.append(f'| <a id="{option_anchor(name)}"></a>`--nemo-{name}` | `nemo_{options.dest_name(name)}` | '
                   f"`{options.env_name(name)}` | flag (ini/env: `1`/`true`/`yes`/`on`) | {_cell(help_text)} |")
    out += ["", '<a id="nemo_suite_files"></a>The ini key `nemo_suite_files` (one glob per line, relative to the '
            "rootdir) collects suite files without naming them on the command line.\n"]
    return "\n".join(out)


def option_names() -> set[str]:
    from pytest_nemo_eval.runner import options

    return {f"--nemo-{n}" for n, _, _ in options.SETTINGS} | {f"--nemo-{n}" for n, _ in options.FLAGS}


def interceptors_page() -> str:
    from pytest_nemo_eval.adapters.builtins import builtin_interceptors, chain_order
    from pytest_nemo_eval.adapters.registry import CUSTOM_ORDER, CUSTOM_SLOT

    out = [GENERATED_NOTE.format(source="pytest_nemo_eval/adapters/registry.py and adapters/interceptors/"),
           "# Interceptors\n",
           "The proxy in front of the model runs a chain of interceptors on every request of a benchmark's route. "
           "A suite configures them under `adapter:` (in `defaults` or on a benchmark), one key per interceptor. "
           "This page is generated from the registry (`pytest_nemo_eval/adapters/registry.py`) and the modules of "
           "`adapters/interceptors/`; the design is in `pytest_nemo_eval/adapters/README.md`.\n",
           "Chain order, outermost first (requests flow down, responses back up):\n",
           "    " + " > ".join("custom" if n == CUSTOM_SLOT else n for n in chain_order()) + " > upstream\n",
           f"Custom interceptors (`adapter.custom`, registered with `@register_interceptor(name)`) sit at order "
           f"{CUSTOM_ORDER:g}.\n"]
    for cls in builtin_interceptors():
        doc = (typing.cast(Any, __import__(cls.__module__, fromlist=["_"])).__doc__ or cls.__doc__ or "").strip()
        when = ("always on (no key)" if cls.always_on else
                "on unless set to null / `enabled: false`" if cls.on_by_default else "off unless its key is set")
        out += [f'## <a id="{cls.name}"></a>`{cls.name}`\n', f"Order {cls.order:g}; {when}"
                + (f"; a plain string means `{{{cls.shorthand_field}: <string>}}`" if cls.shorthand_field else "")
                + ".\n", _first_paragraph(doc) + "\n"]
        if cls.config_model is not None and cls.config_model.model_fields:
            out.append(model_table(cls.config_model, f"{cls.name}"))
    return "\n".join(out)


def _first_paragraph(doc: str) -> str:
    return " ".join(doc.split("\n\n")[0].split())


def harnesses_page() -> str:
    from pytest_nemo_eval.harness import eval_factory

    out = [GENERATED_NOTE.format(source="pytest_nemo_eval/harness/eval_factory.py"), "# Eval-factory harnesses\n",
           "Each eval-factory harness is an image (`" + eval_factory.IMAGE_REGISTRY + "/<harness>:<tag>`, for "
           "`runtime: docker`) and a PyPI package that installs `nemo-evaluator` (for `runtime: local`). This "
           "table is `KNOWN_HARNESSES` in `pytest_nemo_eval/harness/eval_factory.py`; a harness not listed still "
           "runs under its suite name.\n",
           "| `harness:` = image name | `--eval_type` framework | PyPI package | data, offline | judge | "
           "runs model code |", "|---|---|---|---|---|---|"]
    for h in eval_factory.KNOWN_HARNESSES.values():
        code = ("all tasks" if h.code_tasks == ("*",) else
                ", ".join(f"`{p}`" for p in h.code_tasks) if h.code_tasks else "no")
        out.append(f'| <a id="{h.image}"></a>`{h.image}` | `{h.framework}` | `{h.package}` | {_cell(h.data)} | '
                   f"{_cell(h.judge or 'no')} | {code} |")
    return "\n".join(out) + "\n"


def cli_help() -> dict[str, str]:
    """Each command's `--help` as its parser prints it at 100 columns."""
    from pytest_nemo_eval import cli
    from pytest_nemo_eval.harness.builtin import cli as harness_cli
    from pytest_nemo_eval.report import cli as report_cli

    calls: dict[str, Callable[[], object]] = {"nemo-eval": lambda: cli.main(["--help"])}
    for name in cli.SUBCOMMANDS:
        calls[f"nemo-eval {name}"] = lambda name=name: cli.main([name, "--help"])  # type: ignore[misc]
    calls["nemo-eval-harness"] = lambda: harness_cli.main(["--help"])
    calls["nemo-eval-harness run_eval"] = lambda: harness_cli.main(["run_eval", "--help"])
    calls["nemo-eval-report"] = lambda: report_cli.main(["--help"])
    out = {}
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        for command, call in calls.items():
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
                call()
            out[command] = buffer.getvalue().rstrip()
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved
    return out


def cli_page() -> str:
    out = [GENERATED_NOTE.format(source="the commands' argparse parsers"), "# Command line\n",
           "Three commands come with the package (`[project.scripts]` in `pyproject.toml`). Their help, as they "
           "print it:\n"]
    for command, text in cli_help().items():
        out += [f'## <a id="{command.replace(" ", "-")}"></a>`{command}`\n', "```text", text, "```\n"]
    return "\n".join(out)


def _example_result() -> Any:
    """A benchmark result with every field set (one metric, a judged route, a paired and an unpaired baseline
    comparison), so `to_properties` writes every test-case property name it can write."""
    from pytest_nemo_eval.gate import Comparison
    from pytest_nemo_eval.paired import PairedTest
    from pytest_nemo_eval.report import properties
    from pytest_nemo_eval.results import BenchmarkResult, MetricResult
    from pytest_nemo_eval.suite import Threshold

    paired = PairedTest(method="mcnemar", n=1, baseline_mean=1.0, current_mean=1.0, drop=0.0, drop_ci_low=0.0,
                        drop_ci_high=0.0, stderr=0.0, p_value=1.0, mde=0.0, worse=[], better=[])
    from pytest_nemo_eval.gate_policy import decide
    from pytest_nemo_eval.suite import GatePolicy

    decision = decide(0.0, 0.0, 0.015, tier="critical", confidence=0.95, interval="paired mcnemar", p_adjusted=1.0,
                      correction="holm over 1")
    compare = dict(benchmark="s::b", baseline=1.0, current=1.0, allowed=0.0, higher_is_better=True, regressed=False,
                   note="n", decision=decision)
    facts = {name: _sample_value(BenchmarkResult.model_fields[name].annotation) for name in properties.FACT_FIELDS}
    return BenchmarkResult(
        benchmark="<suite>::<benchmark>", status="error", outcome="pass", message="m", **facts,
        chat_template_kwargs={"k": 1}, proxy={k: 1.0 for k in properties.PROXY_FIELDS},
        judge={"model": "m", "url": "u", "<counter>": "1"},
        metrics={"<metric>": MetricResult(value=1.0, stderr=0.0, count=1, ci_low=0.0, ci_high=1.0, ci_method="Wilson",
                                          threshold=Threshold(min=0.5), verdict="pass")},
        baseline=[Comparison(metric="<metric>", paired=paired, **compare),  # type: ignore[arg-type]
                  Comparison(metric="<metric>", **compare)],  # type: ignore[arg-type]
        gate=GatePolicy(), early_stop={"metric": "<metric>", "samples_used": 1, "samples_planned": 2, "reason": "pass"})


def _sample_value(annotation: Any) -> Any:
    """A valid value of a result field's type, so the example result has every fact set."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return args[0]
    if origin in (typing.Union, types.UnionType):
        return _sample_value(next(a for a in args if a is not type(None)))
    if annotation is bool:
        return True
    if annotation in (int, float):
        return annotation(1)
    return "x"


def testcase_properties() -> list[str]:
    """Every test-case property name `report/properties.py` writes, `<metric>` etc. standing for a name."""
    from pytest_nemo_eval.report import properties

    names: list[str] = []
    for name, _ in properties.to_properties(_example_result()):
        if name not in names:
            names.append(name)
    return names


def _literal_names(package_dir: str) -> list[str]:
    """`nemo.*` property names the package writes as string literals or f-strings (`{x}` shown as `<x>`)."""
    import ast
    import re
    from pathlib import Path

    found: list[str] = []
    shape = re.compile(r"^nemo\.[a-z0-9_<>.]*[a-z0-9_>]$")
    for path in sorted(Path(package_dir).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            text = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            elif isinstance(node, ast.JoinedStr):
                text = "".join(str(v.value) if isinstance(v, ast.Constant) else
                               f"<{ast.unparse(v.value).split('.')[-1]}>" if isinstance(v, ast.FormattedValue) else ""
                               for v in node.values)
            if text and shape.match(text) and text not in found:
                found.append(text)
    return found


def junit_names() -> list[str]:
    """Test-case names first, then the session's (provenance) names the package writes."""
    import pytest_nemo_eval

    package = os.path.dirname(pytest_nemo_eval.__file__)
    case = testcase_properties()
    suite = [n for d in ("runner", "report") for n in _literal_names(os.path.join(package, d))]
    return case + [n for n in dict.fromkeys(suite) if n not in case and not _covered(n, case)]


def _covered(name: str, names: list[str]) -> bool:
    """`nemo.proxy.<key>` and the like: a literal the generated names already spell out."""
    import re

    pattern = re.escape(name)
    pattern = re.sub(r"<[^>]*>", ".+", pattern.replace("\\<", "<").replace("\\>", ">"))
    return any(re.fullmatch(pattern, n) for n in names) or any(
        re.fullmatch(re.sub(r"<[^>]*>", ".+", re.escape(n).replace("\\<", "<").replace("\\>", ">")), name)
        for n in names)


def junit_page() -> str:
    from pytest_nemo_eval.report import properties

    case = testcase_properties()
    session = [n for n in junit_names() if n not in case]
    out = [GENERATED_NOTE.format(source="pytest_nemo_eval/report/properties.py"), "# JUnit properties\n",
           "`pytest --junitxml gate.xml` writes one test case per benchmark, each with the properties below, and the "
           "run's provenance as properties of the test suite. `pytest_nemo_eval/report/properties.py` is the one "
           "module that writes and reads the test-case ones; this list is what it writes for a result with every "
           "field set (`<metric>`, `<counter>`, `<suite>` stand for names). `nemo-eval-report` and every exporter "
           "read them back.\n", "## Test case (one benchmark)\n", "| property | |", "|---|---|"]
    notes = {"nemo.status": "passed \\| failed \\| error \\| skipped (a harness error is a `<failure>` element, "
                            "as pytest reports it in the call phase; this property still says `error`)",
             "nemo.error": "the first line of an errored benchmark's message (its `Diagnosis:`)"}
    for name in case:
        out.append(f'| <a id="{_prop_anchor(name)}"></a>`{name}` | {notes.get(name, "")} |')
    out += ["", f"`nemo.proxy.<counter>` are the route's counters ({', '.join(properties.PROXY_FIELDS)}); "
            f"`nemo.baseline.<metric>.*` are written with `--nemo-baseline` and not read back; `worse_items` and "
            f"`better_items` hold at most {properties.MAX_FLIPPED_IDS} ids.\n",
            "## Test suite (the run's provenance)\n", "| property |", "|---|"]
    out += [f'| <a id="{_prop_anchor(name)}"></a>`{name}` |' for name in session]
    return "\n".join(out) + "\n"


def _prop_anchor(name: str) -> str:
    return "p-" + "".join(c if c.isalnum() else "-" for c in name.replace("<", "").replace(">", "")).strip("-")


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """The `# ...` comment at the end of each field's line in the model's source: what the code says a field
    means where it has no `description`."""
    import inspect
    import re
    import tokenize

    try:
        source = inspect.getsource(model)
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    field_line = re.compile(r"^\s{4}(\w+)\s*:")
    lines = source.splitlines()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            match = field_line.match(lines[token.start[0] - 1])
            if match and match.group(1) in model.model_fields:
                comments[match.group(1)] = token.string.lstrip("# ").strip()
    return comments


def result_fields_section() -> str:
    """Tables of the result models' fields (type, default, the code's comment), for the API page."""
    from pytest_nemo_eval.results import BenchmarkResult, MetricResult, RunResult

    out = []
    for model in (RunResult, BenchmarkResult, MetricResult):
        comments = field_comments(model)
        rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            rows.append(f"| `{name}` | {_cell(_type_name(field.annotation))} | {_cell(_default(field))} | "
                        f"{_cell(field.description or comments.get(name, ''))} |")
        doc = " ".join((model.__doc__ or "").split())
        out += [f"### `{model.__name__}` fields\n", doc + "\n", "\n".join(rows) + "\n"]
    return "\n".join(out)
