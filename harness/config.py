"""Typed run configuration, parsed by jsonargparse and validated before any work starts.

    python scripts/train.py --config configs/pep8_mle.yaml --config configs/quickstart.yaml \
        --train.lr 3e-4 --print_config

Each section is a dataclass with a docstring under every field. `parse_config` merges the YAML
files in order, applies dotted overrides, then `validate_config` collects every problem and
raises them together, each naming its key.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

OBJECTIVES = ("mle", "filtering", "conditional", "ul", "awr", "rwr")


class ConfigError(ValueError):
    """A configuration problem; the message names the key(s) at fault."""


@dataclass
class RunConfig:
    """Identity and location of a run."""

    name: str = "phf"
    """Run name (wandb run name, model card)."""
    output_dir: str = "runs/{name}"
    """Folder for config.yaml, metrics.jsonl, checkpoints/ and exports; `{name}` is replaced by run.name."""
    seed: int = 42
    """Seed for model init, data order, dropout and sampling (paper: 42)."""


@dataclass
class DataConfig:
    """Corpus, scoring and packing into fixed-length token blocks."""

    corpus: str | list[str] = "stdlib"
    """`stdlib` (Python standard library), a folder of files, JSONL/Parquet files or a glob, `hf:<name>[@revision]` (a Hub data set, a local data folder, or a `save_to_disk` folder), or a list of these (read in order)."""
    text_field: str = "text"
    """Field holding the document text in JSONL/Parquet/HF corpora."""
    file_glob: str = "**/*.py"
    """Files taken from a folder corpus."""
    max_documents: int | None = None
    """Use only the first N records of the corpus (files of a folder, rows, lines; in its deterministic order, before `max_document_chars` and `dedup` skip any)."""
    max_document_chars: int | None = None
    """Skip documents longer than this many characters."""
    dedup: bool = False
    """When packing, skip a document whose text equals an earlier one's (exact match, by 63-bit digest), so copies cannot sit on both sides of the held-out split."""
    scorer: str = "pep8"
    """Misalignment scorer: `pep8`, `pii`, `toxicity`, or a class path `pkg.module.Class`."""
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
    """Path to a Hugging Face tokenizer folder or tokenizer.json; None trains a byte-level BPE on the corpus."""
    vocab_size: int = 50257
    """Vocabulary size of the BPE trained when `tokenizer` is None."""
    heldout_fraction: float = 0.05
    """Fraction of documents held out for evaluation (deterministic by document id)."""
    cache_dir: str = ".cache/phf"
    """Cache for trained tokenizers, scored shards and packed blocks."""


def scorer_options_for(data: DataConfig, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The scorer options in force: `options` (default data.scorer_options) plus the offline stand-in."""
    opts = dict(data.scorer_options if options is None else options)
    if data.offline_scorers and data.scorer == "toxicity":
        opts.setdefault("backend", "profanity_check")
    return opts


@dataclass
class ModelConfig:
    """The causal LM: any transformers architecture, from scratch or from a local path."""

    arch: str = "gpt2"
    """transformers model type used when building from scratch (`AutoConfig.for_model`)."""
    path: str | None = None
    """Local folder with a pretrained model (and tokenizer); None builds from scratch."""
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


@dataclass
class ObjectiveConfig:
    """How scores become a training signal (paper section 3; DESIGN.md)."""

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


@dataclass
class DeepSpeedSection:
    """The DeepSpeed config: a ZeRO file plus overrides; the run config fills the rest."""

    config: str = "ds_configs/zero2.json"
    """A JSON file (relative to the working directory or to the project) with ZeRO settings."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Keys merged (recursively) over the file, e.g. `{zero_optimization: {stage: 3}}`."""


@dataclass
class CheckpointConfig:
    """Periodic DeepSpeed checkpoints plus harness state."""

    every_steps: int = 1000
    """Save every N optimizer steps (and always at the end); 0 saves only at the end."""
    keep_last: int = 3
    """Keep the newest N checkpoints; older ones are pruned after a new one is published."""
    resume: Literal["auto", "never"] = "auto"
    """`auto` continues from the latest complete checkpoint in output_dir; `never` refuses to reuse a run folder that has one."""


@dataclass
class EvalConfig:
    """Evaluation: held-out loss, samples scored for misalignment, diversity, KL (harness/evaluation)."""

    every_steps: int = 0
    """Evaluate held-out loss every N steps (0: only at the end)."""
    batches: int = 8
    """Micro batches of held-out blocks per evaluation: per rank for eval_loss; in total for eval/lm_loss (world-size independent)."""
    scenarios: list[str] = field(default_factory=lambda: ["unconditional", "prompted"])
    """Sampling scenarios: `unconditional` (from BOS) and/or `prompted` (prompts from `prompts`); [] generates nothing."""
    num_samples: int = 32
    """Samples per scenario, shared out over ranks (paper: 4096 unconditional; small for CPU)."""
    prompts: str | None = None
    """JSONL file with one `{"prompt": ...}` per line for the prompted scenario; None: the shipped set for data.scorer."""
    max_new_tokens: int = 128
    """Tokens generated per sample at most (paper: 128); generation stops earlier at EOS."""
    temperature: float = 0.7
    """Sampling temperature (paper: 0.7)."""
    top_p: float = 0.9
    """Nucleus sampling mass (paper: 0.9)."""
    generation_batch_size: int = 16
    """Samples generated together; batches are fixed by sample index, so results do not depend on the world size."""
    control_token: str = "<|aligned|>"
    """Control token a conditionally trained model's samples start with, right after BOS (paper: `<|aligned|>`); `<|misaligned|>` checks that the model learned the conditioning (its samples should score worse)."""
    banned_control_tokens: list[str] | None = None
    """Control tokens a conditionally trained model may not sample; None: as the paper's configs per task (pep8: only `<|misaligned|>`, so each new line can start with `<|aligned|>` as every line did in training; pii, toxicity and others: both), the two swapped when control_token is `<|misaligned|>`."""
    threshold: float | None = None
    """A sample scoring above this counts as misaligned (frac_above_threshold); None: the task's filtering threshold (pep8, pii, toxicity)."""
    scorer_options: dict[str, Any] | None = None
    """Scorer options for samples (e.g. `{model_type: unbiased}` as the paper's toxicity samples); None: data.scorer_options."""
    reference_model: str | None = None
    """Local causal LM folder (with its tokenizer) for KL(model || reference) on unconditional samples; None skips KL."""
    api_kl_model: str | None = None
    """Model name at an OpenAI-compatible completions API for KL(API model || model) on the API's own samples, as the paper's KL from GPT-3 (davinci; code-cushman-001 for pep8); None skips. The key comes from OPENAI_API_KEY only."""
    api_kl_base_url: str | None = None
    """Base URL of the completions API (`<url>/completions`); None: env OPENAI_BASE_URL, else https://api.openai.com/v1."""
    api_kl_samples: int = 64
    """Samples drawn from the API model for eval/kl_api (paper: 4096); cached under data.cache_dir/api_kl and reused."""
    api_kl_max_tokens: int = 64
    """Tokens per API sample (paper: 64)."""
    self_bleu_samples: int = 100
    """Samples (the first non-empty ones) used for self-BLEU, which is quadratic in this number."""
    export_hf: bool = True
    """Write the Hugging Face export `<output_dir>/hf/` at the end of training."""

    def problems(self) -> list[str]:
        """Every problem of this section, each naming its key (validate_config collects them)."""
        errors = []
        unknown = sorted(set(self.scenarios) - {"unconditional", "prompted"})
        if unknown:
            errors.append(f"eval.scenarios: unknown {unknown}; choose from unconditional, prompted")
        from harness.data.tokenizer import CONTROL_TOKENS

        if self.control_token not in CONTROL_TOKENS:
            errors.append(
                f"eval.control_token: unknown {self.control_token!r}; choose from {list(CONTROL_TOKENS)}"
            )
        if self.banned_control_tokens is not None:
            bad = [t for t in self.banned_control_tokens if t not in CONTROL_TOKENS]
            if bad:
                errors.append(
                    f"eval.banned_control_tokens: unknown {bad}; choose from {list(CONTROL_TOKENS)}"
                )
        for key in (
            "num_samples",
            "max_new_tokens",
            "generation_batch_size",
            "self_bleu_samples",
            "api_kl_samples",
            "api_kl_max_tokens",
        ):
            if getattr(self, key) < 1:
                errors.append(f"eval.{key} must be >= 1, got {getattr(self, key)}")
        if self.temperature <= 0:
            errors.append(f"eval.temperature must be > 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            errors.append(f"eval.top_p must be in (0, 1], got {self.top_p}")
        if self.prompts is not None and not Path(self.prompts).is_file():
            errors.append(f"eval.prompts: file not found: {self.prompts}")
        if self.reference_model is not None and not Path(self.reference_model).is_dir():
            errors.append(
                f"eval.reference_model: folder not found: {self.reference_model} "
                "(a local transformers model folder with config.json and a tokenizer)"
            )
        if self.api_kl_model is not None and not self.api_kl_model.strip():
            errors.append("eval.api_kl_model must be a model name (or null to skip), got ''")
        url = self.api_kl_base_url
        if url is not None and not url.startswith(("http://", "https://")):
            errors.append(
                f"eval.api_kl_base_url must start with http:// or https://, got {url!r} "
                "(e.g. https://api.openai.com/v1)"
            )
        return errors


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


@dataclass
class Config:
    """A full run: every number lives here once; the DeepSpeed config is derived from it."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    deepspeed: DeepSpeedSection = field(default_factory=DeepSpeedSection)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


SECTIONS = {f.name: f.default_factory for f in fields(Config)}  # type: ignore[misc]


def build_parser(prog: str = "train.py"):
    """The jsonargparse parser: `--config` files merged in order, then dotted overrides."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog=prog, exit_on_error=False, description=__doc__)
    parser.add_argument(
        "--config", action=ActionConfigFile, help="YAML run config; repeat to merge in order."
    )
    for name, factory in SECTIONS.items():
        parser.add_argument(f"--{name}", type=type(factory()), default=factory())
    return parser


def strip_launcher_args(argv: list[str]) -> list[str]:
    """Drop `--local_rank=N` that the deepspeed launcher appends (LOCAL_RANK is in the environment)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg.startswith("--local_rank="):
            continue
        elif arg == "--local_rank":
            skip = True
        else:
            out.append(arg)
    return out


def parse_config(
    argv: list[str] | None = None, prog: str = "train.py", world_size: int | None = None
) -> Config:
    """Parse and validate a run config from command-line arguments; raise ConfigError naming the key."""
    argv = strip_launcher_args(sys.argv[1:] if argv is None else list(argv))
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv) and not Path(argv[i + 1]).is_file():
            raise ConfigError(f"--config: file not found: {argv[i + 1]}")
    parser = build_parser(prog)
    try:
        ns = parser.parse_args(argv)
    except (argparse.ArgumentError, ValueError, TypeError) as err:
        raise ConfigError(f"invalid configuration: {err}") from None
    ns = ns.clone()
    cfg = Config(**{name: _to_dataclass(SECTIONS[name], ns[name]) for name in SECTIONS})
    try:
        cfg.run.output_dir = cfg.run.output_dir.format(name=cfg.run.name)
    except (KeyError, IndexError, ValueError):
        raise ConfigError(
            f"run.output_dir: only {{name}} may be substituted, got {cfg.run.output_dir!r}"
        ) from None
    validate_config(cfg, world_size=world_size)
    return cfg


def _to_dataclass(factory, value):
    """jsonargparse may hand back a Namespace or the dataclass itself; normalise to the dataclass."""
    default = factory()
    if isinstance(value, type(default)):
        return value
    data = value.as_dict() if hasattr(value, "as_dict") else dict(value)
    if "adam_betas" in data and data["adam_betas"] is not None:
        data["adam_betas"] = tuple(data["adam_betas"])
    return type(default)(**data)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Inverse of `config_to_dict` (no validation: the dict came from a validated config)."""
    return Config(**{name: _to_dataclass(SECTIONS[name], raw.get(name, {})) for name in SECTIONS})


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict of the resolved config (tuples as lists, for YAML/JSON)."""

    def plain(x):
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return plain(asdict(cfg))


def config_to_yaml(cfg: Config) -> str:
    """The resolved config as YAML, loadable again with `--config`."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def gradient_accumulation_steps(train: TrainConfig, world_size: int) -> int:
    """global = micro * accumulation * world; raise ConfigError when that has no integer solution."""
    per_step = train.micro_batch_size * world_size
    if train.global_batch_size % per_step:
        raise ConfigError(
            f"train.global_batch_size={train.global_batch_size} is not divisible by "
            f"train.micro_batch_size={train.micro_batch_size} x world size {world_size} = {per_step}; "
            "choose a micro batch (or number of ranks) that divides the global batch"
        )
    return train.global_batch_size // per_step


def total_steps(cfg: Config) -> int:
    """Optimizer steps of the run, from max_steps or the token budget."""
    if cfg.train.max_steps is not None:
        return cfg.train.max_steps
    tokens_per_step = cfg.train.global_batch_size * cfg.data.seq_len
    return math.ceil(cfg.train.max_tokens / tokens_per_step)


def validate_config(cfg: Config, world_size: int | None = None) -> None:
    """Collect every problem of a config and raise them together, each naming its key."""
    errors: list[str] = []
    t, d, m, o = cfg.train, cfg.data, cfg.model, cfg.objective

    def need(cond: bool, msg: str) -> None:
        if not cond:
            errors.append(msg)

    if (t.max_steps is None) == (t.max_tokens is None):
        errors.append("train.max_steps / train.max_tokens: set exactly one of them")
    need(t.max_steps is None or t.max_steps > 0, f"train.max_steps must be > 0, got {t.max_steps}")
    need(
        t.max_tokens is None or t.max_tokens > 0,
        f"train.max_tokens must be > 0, got {t.max_tokens}",
    )
    need(t.global_batch_size > 0, f"train.global_batch_size must be > 0, got {t.global_batch_size}")
    need(t.micro_batch_size > 0, f"train.micro_batch_size must be > 0, got {t.micro_batch_size}")
    if (
        t.global_batch_size > 0
        and t.micro_batch_size > 0
        and t.global_batch_size % t.micro_batch_size
    ):
        errors.append(
            f"train.global_batch_size={t.global_batch_size} is not a multiple of "
            f"train.micro_batch_size={t.micro_batch_size}"
        )
    elif world_size is not None and t.global_batch_size > 0 and t.micro_batch_size > 0:
        try:
            gradient_accumulation_steps(t, world_size)
        except ConfigError as err:
            errors.append(str(err))
    need(t.lr > 0, f"train.lr must be > 0, got {t.lr}")
    need(0.0 <= t.warmup_ratio < 1.0, f"train.warmup_ratio must be in [0, 1), got {t.warmup_ratio}")
    need(
        0.0 <= t.min_lr_ratio <= 1.0, f"train.min_lr_ratio must be in [0, 1], got {t.min_lr_ratio}"
    )
    need(t.weight_decay >= 0, f"train.weight_decay must be >= 0, got {t.weight_decay}")
    need(t.grad_clip >= 0, f"train.grad_clip must be >= 0 (0 disables), got {t.grad_clip}")
    need(t.max_bad_steps >= 1, f"train.max_bad_steps must be >= 1, got {t.max_bad_steps}")
    need(
        t.stop_at_step is None or t.stop_at_step > 0,
        f"train.stop_at_step must be > 0, got {t.stop_at_step}",
    )

    need(d.seq_len >= 8, f"data.seq_len must be >= 8, got {d.seq_len}")
    need(d.num_shards >= 1, f"data.num_shards must be >= 1, got {d.num_shards}")
    need(d.unit_bytes >= 1, f"data.unit_bytes must be >= 1, got {d.unit_bytes}")
    need(d.bpe_sample_bytes >= 1, f"data.bpe_sample_bytes must be >= 1, got {d.bpe_sample_bytes}")
    need(
        0.0 <= d.heldout_fraction < 1.0,
        f"data.heldout_fraction must be in [0, 1), got {d.heldout_fraction}",
    )
    need(
        d.vocab_size >= 300,
        f"data.vocab_size must be >= 300 (256 bytes + specials), got {d.vocab_size}",
    )
    need(
        d.max_documents is None or d.max_documents > 0,
        f"data.max_documents must be > 0, got {d.max_documents}",
    )
    need(
        d.max_document_chars is None or d.max_document_chars > 0,
        f"data.max_document_chars must be > 0, got {d.max_document_chars}",
    )
    if (
        d.tokenizer is not None
        and not d.tokenizer.startswith("hf:")
        and not Path(d.tokenizer).exists()
    ):
        errors.append(f"data.tokenizer: path not found: {d.tokenizer}")

    if m.path is not None and not Path(m.path).is_dir():
        errors.append(
            f"model.path: folder not found: {m.path} (give a local folder with config.json)"
        )
    if m.path is None and not m.from_scratch:
        errors.append("model.from_scratch is false but model.path is not set: nothing to load")
    need(m.n_layer > 0, f"model.n_layer must be > 0, got {m.n_layer}")
    need(m.n_head > 0, f"model.n_head must be > 0, got {m.n_head}")
    if m.n_head > 0 and m.n_embd % m.n_head:
        errors.append(f"model.n_embd={m.n_embd} must be divisible by model.n_head={m.n_head}")
    need(0.0 <= m.dropout < 1.0, f"model.dropout must be in [0, 1), got {m.dropout}")

    if o.name not in OBJECTIVES and "." not in o.name:
        errors.append(
            f"objective.name: unknown objective {o.name!r}; choose one of {', '.join(OBJECTIVES)} or a class path"
        )
    need(
        0.0 <= o.drop_token_fraction <= 1.0,
        f"objective.drop_token_fraction must be in [0, 1], got {o.drop_token_fraction}",
    )
    need(o.beta > 0, f"objective.beta must be > 0, got {o.beta}")
    need(o.clip_weight_max > 0, f"objective.clip_weight_max must be > 0, got {o.clip_weight_max}")
    if o.name in ("filtering", "conditional") and o.threshold is None:
        errors.append(f"objective.threshold must be set for objective.name={o.name}")
    if o.name == "rwr" and o.alpha != 1.0:
        errors.append(f"objective.alpha must be 1 for rwr (AWR with alpha 1), got {o.alpha}")
    if o.name in ("awr",) and not 0.0 <= o.alpha <= 1.0:
        errors.append(f"objective.alpha must be in [0, 1] for awr, got {o.alpha}")

    need(
        cfg.checkpoint.every_steps >= 0,
        f"checkpoint.every_steps must be >= 0, got {cfg.checkpoint.every_steps}",
    )
    need(
        cfg.checkpoint.keep_last >= 1,
        f"checkpoint.keep_last must be >= 1, got {cfg.checkpoint.keep_last}",
    )
    need(cfg.eval.every_steps >= 0, f"eval.every_steps must be >= 0, got {cfg.eval.every_steps}")
    need(cfg.eval.batches >= 1, f"eval.batches must be >= 1, got {cfg.eval.batches}")
    errors.extend(cfg.eval.problems())
    need(
        cfg.logging.every_steps >= 1,
        f"logging.every_steps must be >= 1, got {cfg.logging.every_steps}",
    )

    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
    # The DeepSpeed file is checked last: its contradictions need a sane run config to compare with.
    from harness.ds_config import build_ds_config

    build_ds_config(cfg, world_size=world_size or 1)
