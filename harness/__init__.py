"""phf-harness: pretraining language models with human preferences on DeepSpeed."""
