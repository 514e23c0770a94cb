"""The sections of a run config: one dataclass each, a docstring under every field.

Each section validates itself (`problems()`: every problem of the section, each naming its key);
the checks that need two sections or the world size are in `harness.run_config.validate_config`.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class ConfigError(ValueError):
    """A configuration problem; the message names the key(s) at fault."""


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def failed(*checks: tuple[bool, str]) -> list[str]:
    """The messages of the checks whose condition is False."""
    return [message for ok, message in checks if not ok]


@dataclass
class RunConfig:
    """Identity and location of a run."""

    name: str = "phf"
    """Run name (wandb run name, model card)."""
    output_dir: str = "runs/{name}"
    """Folder for config.yaml, metrics.jsonl, checkpoints/ and exports; `{name}` is replaced by run.name."""
    seed: int = 42
    """Seed for model init, data order, dropout and sampling (paper: 42)."""

    def problems(self) -> list[str]:
        """Every problem of this section, each naming its key."""
        try:
            self.output_dir.format(name=self.name)
        except (KeyError, IndexError, ValueError):
            return [f"run.output_dir: only {{name}} may be substituted, got {self.output_dir!r}"]
        return []


@dataclass
class DataConfig:
    """Corpus, scoring and packing into fixed-length token blocks."""

    corpus: str | list[str] = "stdlib"
    """`stdlib` (Python standard library), a folder of files, JSONL/Parquet files or a glob, `hf:<name>[@revision]` (a Hub data set, a local data folder, or a `save_to_disk` folder), `injected:<code>:<rate>[:<folder>]` (the stdlib or a folder of code with a PEP8 violation injected on that mean share of lines, e.g. `injected:W291:0.3`), or a list of these (read in order)."""
    text_field: str = "text"
    """Field holding the document text in JSONL/Parquet/HF corpora."""
    file_glob: str = "**/*.py"
    """Files taken from a folder corpus."""
    max_documents: int | None = None
    """Use only the first N records of the corpus (files of a folder, rows, lines; in its deterministic order, before `max_document_chars` and `dedup` skip any)."""
    max_document_chars: int | None = None
    """Skip documents longer than this many characters."""
    skip_tokens: int | None = None
    """Leave out the training documents that start within the first N tokens of the training split, in corpus order (document-granular; held-out documents are unaffected): finetune on what a model pretrained with `take_tokens: N` has not seen."""
    take_tokens: int | None = None
    """Train only on the documents that start within the first N tokens of the training split, after any skip (document-granular): pretrain on a corpus prefix."""
    dedup: bool = False
    """When packing, skip a document whose text equals an earlier one's (exact match, by 63-bit digest), so copies cannot sit on both sides of the held-out split."""
    scorer: str = "pep8"
    """Misalignment scorer: `pep8`, `pii`, `toxicity`, or a class path `pkg.module.Class`."""
    task: str | None = None
    """The task (harness/tasks): `pep8`, `pii`, `toxicity` or a class path `pkg.module.MyTask` (its scorer, thresholds, prompts, banned control tokens, plot label); None: the built-in task of `scorer`, or a plain task around a scorer class path."""
    scorer_options: dict[str, Any] = field(default_factory=dict)
    """Keyword options for the scorer (e.g. `{backend: profanity_check}` for toxicity)."""
    offline_scorers: bool = False
    """Where the paper's scorer needs downloaded weights, use its offline stand-in (toxicity: alt-profanity-check instead of Detoxify); the quickstart sets it."""
    scored_dir: str | None = None
    """Where scored Parquet shards live; default `<cache_dir>/scored/<corpus key>-<scorer>-<options hash>`."""
    num_shards: int = 64
    """The corpus is cut into about this many units (one scoring and packing task, one shard each), or more where a unit would exceed `unit_bytes`."""
    unit_bytes: int = 64_000_000
    """Most source bytes in one unit (a task: what a kill can cost one worker); a single file or Parquet row group larger than this is one unit."""
    bpe_sample_bytes: int = 300_000_000
    """Text a BPE tokenizer is trained on at most (when `tokenizer` is None): training documents sampled by id hash, the whole training split when it is smaller."""
    seq_len: int = 1024
    """Tokens per training block (paper: 1024)."""
    tokenizer: str | None = None
    """A tokenizer folder or tokenizer.json, or `hf:<name>[@revision]` on the Hub (copied into the run folder at a recorded commit); None: the tokenizer of a pretrained `model.path`, else a byte-level BPE trained on the corpus."""
    vocab_size: int = 50257
    """Vocabulary size of the BPE trained when `tokenizer` is None."""
    heldout_fraction: float = 0.05
    """Fraction of documents held out for evaluation (deterministic by document id)."""
    cache_dir: str = ".cache/phf"
    """Cache for trained tokenizers, scored shards and packed blocks."""

    def problems(self) -> list[str]:
        """Every problem of this section, each naming its key."""
        errors = failed(
            (self.seq_len >= 8, f"data.seq_len must be >= 8, got {self.seq_len}"),
            (self.num_shards >= 1, f"data.num_shards must be >= 1, got {self.num_shards}"),
            (self.unit_bytes >= 1, f"data.unit_bytes must be >= 1, got {self.unit_bytes}"),
            (
                self.bpe_sample_bytes >= 1,
                f"data.bpe_sample_bytes must be >= 1, got {self.bpe_sample_bytes}",
            ),
            (
                0.0 <= self.heldout_fraction < 1.0,
                f"data.heldout_fraction must be in [0, 1), got {self.heldout_fraction}",
            ),
            (
                self.vocab_size >= 300,
                f"data.vocab_size must be >= 300 (256 bytes + specials), got {self.vocab_size}",
            ),
            (
                self.max_documents is None or self.max_documents > 0,
                f"data.max_documents must be > 0, got {self.max_documents}",
            ),
            (
                self.max_document_chars is None or self.max_document_chars > 0,
                f"data.max_document_chars must be > 0, got {self.max_document_chars}",
            ),
            (
                self.skip_tokens is None or self.skip_tokens >= 0,
                f"data.skip_tokens must be >= 0, got {self.skip_tokens}",
            ),
            (
                self.take_tokens is None or self.take_tokens > 0,
                f"data.take_tokens must be > 0, got {self.take_tokens}",
            ),
        )
        tok = self.tokenizer
        if tok is not None and not tok.startswith("hf:") and not Path(tok).exists():
            errors.append(f"data.tokenizer: path not found: {tok}")
        return errors


@dataclass
class ModelConfig:
    """The causal LM: any transformers architecture, from scratch or from a local path."""

    arch: str = "gpt2"
    """transformers model type used when building from scratch (`AutoConfig.for_model`)."""
    path: str | None = None
    """A pretrained model (and tokenizer): a local folder, or `hf:<name>[@revision]` on the Hub (downloaded at a commit recorded in the run); None builds from scratch."""
    from_scratch: bool = True
    """Build randomly initialised weights from `arch` (ignored when `path` is given and this is False)."""
    n_layer: int = 12
    """Transformer blocks (num_hidden_layers)."""
    n_head: int = 12
    """Attention heads (num_attention_heads)."""
    n_embd: int = 768
    """Hidden size (hidden_size)."""
    dropout: float = 0.1
    """Residual, embedding and attention dropout (GPT-2 default 0.1)."""
    config_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for the transformers config (paper: reorder_and_upcast_attn, ...)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory."""
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = "auto"
    """Attention kernel passed to transformers. `auto`: eager when the model config asks for what only
    eager implements (GPT-2's reorder_and_upcast_attn, as in the paper's configs), else sdpa."""
    compile: bool = False
    """torch.compile the backbone for the training and held-out loss (the fused loss keeps its kernels)."""

    def problems(self) -> list[str]:
        """Every problem of this section, each naming its key."""
        errors = failed(
            (self.n_layer > 0, f"model.n_layer must be > 0, got {self.n_layer}"),
            (self.n_head > 0, f"model.n_head must be > 0, got {self.n_head}"),
            (0.0 <= self.dropout < 1.0, f"model.dropout must be in [0, 1), got {self.dropout}"),
        )
        if (
            self.path is not None
            and not self.path.startswith("hf:")
            and not Path(self.path).is_dir()
        ):
            errors.append(
                f"model.path: folder not found: {self.path} (a local folder with config.json, or "
                "hf:<name>[@revision] for a Hub model)"
            )
        if self.path is None and not self.from_scratch:
            errors.append("model.from_scratch is false but model.path is not set: nothing to load")
        if self.n_head > 0 and self.n_embd % self.n_head:
            errors.append(
                f"model.n_embd={self.n_embd} must be divisible by model.n_head={self.n_head}"
            )
        return errors + self._attention_problems()

    def _attention_problems(self) -> list[str]:
        choices = ("auto", "eager", "sdpa", "flash_attention_2")
        if self.attn_implementation not in choices:
            return [
                f"model.attn_implementation must be one of {', '.join(choices)}, "
                f"got {self.attn_implementation!r}"
            ]
        if self.attn_implementation in ("auto", "eager"):
            return []
        errors = []
        source = self.config_value_source("reorder_and_upcast_attn")
        if source is not None:
            errors.append(
                f"model.attn_implementation={self.attn_implementation} ignores "
                f"reorder_and_upcast_attn: true ({source}): only eager attention implements it; "
                f"set model.attn_implementation: eager (or auto), or "
                f"model.config_kwargs.reorder_and_upcast_attn: false"
            )
        if self.attn_implementation == "flash_attention_2" and not _installed("flash_attn"):
            errors.append(
                "model.attn_implementation=flash_attention_2 needs the flash-attn package and a "
                "CUDA GPU (pip install flash-attn); sdpa already uses PyTorch's FlashAttention "
                "kernels on a GPU"
            )
        return errors

    def config_value_source(self, key: str) -> str | None:
        """Where a truthy transformers-config `key` comes from, or None when the model's config
        leaves it false: model.config_kwargs when built from `arch`, else model.path's config.json
        (as `harness.model.build_model` builds it)."""
        if self.path is None:
            return f"model.config_kwargs.{key}" if self.config_kwargs.get(key) else None
        config_file = Path(self.path) / "config.json"
        if config_file.is_file() and json.loads(config_file.read_text()).get(key):
            return f"{key} in {config_file}"
        return None

    def resolved_attn_implementation(self) -> str | None:
        """What transformers gets: `auto` is eager where the config needs it, else None
        (transformers' own default: sdpa wherever the architecture supports it)."""
        if self.attn_implementation != "auto":
            return self.attn_implementation
        return "eager" if self.config_value_source("reorder_and_upcast_attn") else None


@dataclass
class ObjectiveConfig:
    """How scores become a training signal (paper section 3; docs/design.md)."""

    name: str = "mle"
    """`mle`, `filtering`, `conditional`, `ul`, `awr`, `rwr`, or a class path `pkg.module.Class`."""
    threshold: float | None = None
    """Score threshold: filtering drops documents with avg_score above it; conditional marks segments above it misaligned."""
    drop_token_fraction: float = 0.0
    """Conditional training: probability of adding no control token to a segment."""
    score_threshold: float | None = None
    """Unlikelihood: hard threshold on token scores; null means the soft form a=1-s, b=alpha*s."""
    alpha: float = 1.0
    """UL: weight of the unlikelihood term. AWR: weight of the LM term vs the value loss (RWR: 1)."""
    beta: float = 1.0
    """AWR/RWR temperature of exp(A / beta)."""
    clip_weight_max: float = 1000.0
    """AWR/RWR: maximum token weight."""
    value_head_detached: bool = False
    """AWR: train the value head on detached hidden states (the value loss does not reach the backbone)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword options for a user objective given by class path."""

    def problems(self) -> list[str]:
        """Problems common to every objective; each objective checks its own keys (`problems`)."""
        return failed(
            (
                0.0 <= self.drop_token_fraction <= 1.0,
                f"objective.drop_token_fraction must be in [0, 1], got {self.drop_token_fraction}",
            ),
            (self.beta > 0, f"objective.beta must be > 0, got {self.beta}"),
            (
                self.clip_weight_max > 0,
                f"objective.clip_weight_max must be > 0, got {self.clip_weight_max}",
            ),
        )


@dataclass
class TrainConfig:
    """Optimisation: budget, batch arithmetic, optimizer and schedule."""

    max_steps: int | None = None
    """Optimizer steps to train for (set this or max_tokens)."""
    max_tokens: int | None = None
    """Token budget; steps = ceil(max_tokens / (global_batch_size * seq_len)) (paper: 3.3e9)."""
    global_batch_size: int = 64
    """Sequences per optimizer step over all ranks (the paper's effective batch), fixed whatever the world size."""
    micro_batch_size: int = 8
    """Sequences per rank per forward pass; gradient accumulation = global / (micro * world)."""
    lr: float = 5e-4
    """Peak learning rate."""
    lr_decay: Literal["linear", "cosine"] = "linear"
    """Decay after warmup (paper: linear, the transformers default)."""
    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of `lr` (cosine decay only)."""
    warmup_ratio: float = 0.01
    """Fraction of steps spent in linear warmup (paper: 1%)."""
    weight_decay: float = 0.1
    """AdamW weight decay, not applied to biases and norms (paper: 0.1)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas (transformers defaults, as in the paper)."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Training precision; fp16 uses dynamic loss scaling (GPU only)."""
    max_bad_steps: int = 10
    """Stop after this many consecutive steps with a non-finite loss."""
    stop_at_step: int | None = None
    """Save and stop cleanly after this step, schedule untouched (e.g. to fit an allocation); rerun to continue."""
    tokens_already_seen: int = 0
    """Tokens a pretrained `model.path` has already seen: logged `tokens` start here and the step budget is `max_tokens` minus it (fresh optimizer and schedule)."""

    def problems(self) -> list[str]:
        """Every problem of this section, each naming its key (the world size is checked later)."""
        errors = failed(
            (
                (self.max_steps is None) != (self.max_tokens is None),
                "train.max_steps / train.max_tokens: set exactly one of them",
            ),
            (
                self.max_steps is None or self.max_steps > 0,
                f"train.max_steps must be > 0, got {self.max_steps}",
            ),
            (
                self.max_tokens is None or self.max_tokens > 0,
                f"train.max_tokens must be > 0, got {self.max_tokens}",
            ),
            (
                self.tokens_already_seen >= 0,
                f"train.tokens_already_seen must be >= 0, got {self.tokens_already_seen}",
            ),
            (
                self.max_tokens is None or self.tokens_already_seen < self.max_tokens,
                f"train.tokens_already_seen ({self.tokens_already_seen}) must be below "
                f"train.max_tokens ({self.max_tokens}): no tokens would be left to train on",
            ),
            (
                self.global_batch_size > 0,
                f"train.global_batch_size must be > 0, got {self.global_batch_size}",
            ),
            (
                self.micro_batch_size > 0,
                f"train.micro_batch_size must be > 0, got {self.micro_batch_size}",
            ),
            (self.lr > 0, f"train.lr must be > 0, got {self.lr}"),
            (
                0.0 <= self.warmup_ratio < 1.0,
                f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}",
            ),
            (
                0.0 <= self.min_lr_ratio <= 1.0,
                f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}",
            ),
            (self.weight_decay >= 0, f"train.weight_decay must be >= 0, got {self.weight_decay}"),
            (
                self.grad_clip >= 0,
                f"train.grad_clip must be >= 0 (0 disables), got {self.grad_clip}",
            ),
            (
                self.max_bad_steps >= 1,
                f"train.max_bad_steps must be >= 1, got {self.max_bad_steps}",
            ),
            (
                self.stop_at_step is None or self.stop_at_step > 0,
                f"train.stop_at_step must be > 0, got {self.stop_at_step}",
            ),
        )
        batches_ok = self.global_batch_size > 0 and self.micro_batch_size > 0
        if batches_ok and self.global_batch_size % self.micro_batch_size:
            errors.append(
                f"train.global_batch_size={self.global_batch_size} is not a multiple of "
                f"train.micro_batch_size={self.micro_batch_size}"
            )
        return errors


@dataclass
class DeepSpeedSection:
    """The DeepSpeed config: a ZeRO file plus overrides; the run config fills the rest."""

    config: str = "ds_configs/zero2.json"
    """A JSON file (relative to the working directory or to the project) with ZeRO settings."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Keys merged (recursively) over the file, e.g. `{zero_optimization: {stage: 3}}`."""

    def problems(self) -> list[str]:
        """None here: the file is checked against the run config by harness.ds_config."""
        return []


@dataclass
class CheckpointConfig:
    """Periodic DeepSpeed checkpoints plus harness state."""

    every_steps: int = 1000
    """Save every N optimizer steps (and always at the end); 0 saves only at the end."""
    keep_last: int = 3
    """Keep the newest N checkpoints; older ones are pruned after a new one is published."""
    resume: Literal["auto", "never"] = "auto"
    """`auto` continues from the latest complete checkpoint in output_dir; `never` refuses to reuse a run folder that has one."""

    allow_resume_with_changes: bool = False
    """Resume even when the corpus fingerprint, scorer or objective differ from the checkpoint's (on purpose: e.g. a new corpus after pretraining); otherwise a change is an error naming both values."""

    def problems(self) -> list[str]:
        """Every problem of this section, each naming its key."""
        return failed(
            (
                self.every_steps >= 0,
                f"checkpoint.every_steps must be >= 0, got {self.every_steps}",
            ),
            (self.keep_last >= 1, f"checkpoint.keep_last must be >= 1, got {self.keep_last}"),
        )


@dataclass
class LoggingConfig:
    """Metrics: JSONL on rank 0, wandb, progress bar."""

    every_steps: int = 10
    """Log loss, lr, grad norm, tokens, tokens/s and MFU every N steps."""
    wandb: Literal["disabled", "offline", "online"] = "offline"
    """wandb mode (WANDB_MODE in the environment wins)."""
    wandb_project: str = "phf-harness"
    """wandb project name."""
    peak_tflops: float | None = None
    """Peak device TFLOP/s per rank for MFU; None looks the device up (CPU: a nominal FMA estimate)."""
    progress_bar: bool = True
    """Show a tqdm bar on rank 0."""

    def problems(self) -> list[str]:
        """Every problem of this section, each naming its key."""
        return failed(
            (self.every_steps >= 1, f"logging.every_steps must be >= 1, got {self.every_steps}"),
        )
