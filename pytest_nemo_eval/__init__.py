"""pytest-nemo-eval: LLM benchmarks as pytest tests.

Deploys a NeMo 2.0 checkpoint (megatron-core + PyTriton, OpenAI-compatible API),
puts an interceptor proxy in front of it, runs evaluation harnesses against it
and gates on the suite's metric thresholds. See docs/architecture.md.
"""

__version__ = "0.1.0"
