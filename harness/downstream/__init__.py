"""The paper's downstream benchmarks: HumanEval pass@k (`humaneval`, checked in `sandbox`) and
GLUE finetuning (`glue`, `glue_data`); docs/downstream.md."""
