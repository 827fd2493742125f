"""The builtin offline harness `nemo-eval-harness`.

It speaks NeMo Evaluator's `run_eval` CLI and writes the same `results.yml` as
eval-factory images, so either runtime runs it; its tasks are small YAML specs
(`tasks/*.yaml`) over JSONL data, and users can add their own (see tasks.py).
Importable without torch or megatron: the harness image installs only its deps.
"""
