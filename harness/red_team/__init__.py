"""Red teaming: iterative adversarial prompting of a trained model (the paper's robustness test).

    python scripts/red_team.py --checkpoint runs/toxicity_conditional --red_model models/gpt2 --out DIR

- `templates`: the red LM's instructions, the few-shot layout and the parsers of its answers;
- `pool`: the pool of candidate prompts, few-shot draws and the logged metrics;
- `red_lm`: a local causal LM or an OpenAI-compatible completions API as the red LM;
- `target`: the target's continuations of the candidates, sharded over ranks, and their scores;
- `run`: the loop over trials and rounds and its output files; `setup`: options to models.
"""
