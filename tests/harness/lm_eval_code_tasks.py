"""Run with the lm-eval eval-factory venv's python (tests/harness/test_eval_factory_definitions.py): for every
task type of the installed lm-eval framework.yml, what the installed package itself says about running
model-written code: the lm_eval task config's `unsafe_code` (through groups and tags, as lm-eval's TaskManager
resolves them), a metric module that loads HF evaluate's `code_eval` (it executes the predictions), and
code-execution flags in the framework.yml. Prints one JSON object."""

import json
import re
from pathlib import Path

import yaml
from lm_eval import utils
from lm_eval.tasks import TaskManager

CODE_EVAL = re.compile(r"""load\(\s*["']code_eval["']""")
FLAGS = ("--confirm_run_unsafe_code", "--allow_code_execution")

site = Path(utils.__file__).resolve().parents[1]
definition = yaml.safe_load(next(site.glob("core_evals/lm_evaluation_harness/framework.yml")).read_text())
index = TaskManager().task_index


def leaves(name, seen=()):
    """The task configs (yaml path, config) a task, group or tag name runs."""
    entry = index.get(name)
    if entry is None or name in seen:
        return []
    if entry["type"] == "tag":
        return [leaf for sub in entry["task"] for leaf in leaves(sub, seen + (name,))]
    config = utils.load_yaml_config(entry["yaml_path"], mode="simple")  # `!function`s left unimported
    if entry["type"] == "group":
        subs = [s if isinstance(s, str) else s.get("task") for s in config.get("task", [])]
        return [leaf for sub in subs for leaf in leaves(sub, seen + (name,))]
    return [(Path(entry["yaml_path"]), config)]


def loads_code_eval(path: Path) -> bool:
    utils_py = path.parent / "utils.py"
    return "!function utils." in path.read_text() and utils_py.is_file() and bool(CODE_EVAL.search(utils_py.read_text()))


found = {}
for evaluation in definition["evaluations"]:
    config = evaluation["defaults"]["config"]
    tasks = leaves((config.get("params") or {}).get("task"))
    found[config["type"]] = {
        "resolved": len(tasks),
        "unsafe_code": any(bool(c.get("unsafe_code")) for _, c in tasks),
        "code_eval": any(loads_code_eval(p) for p, _ in tasks),
        "flags": [f for f in FLAGS if f in yaml.safe_dump(evaluation) or f in definition["defaults"]["command"]],
    }
print(json.dumps(found))
