"""The training loop: DeepSpeed engine, micro batches, logging, evaluation and checkpoints.

    deepspeed --num_gpus 2 scripts/train.py --config configs/pep8_mle.yaml --config configs/quickstart.yaml

setup -> train -> (evaluate, save) as a plain call chain; every number comes from the run config.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from harness import distributed as dist
from harness.atomic import atomic_write_text, remove_leftovers
from harness.checkpoints.export import export_after_training
from harness.checkpoints.layout import checkpoints_dir, hf_dir
from harness.checkpoints.resume import check_resumable, check_tokenizer
from harness.checkpoints.state import RunState
from harness.checkpoints.training import (
    load_checkpoint,
    remove_unpublished,
    resume_point,
    save_checkpoint,
    to_universal,
)
from harness.config import (
    Config,
    config_to_yaml,
    gradient_accumulation_steps,
    total_steps,
)
from harness.data.loader import BlockLoader, LoaderState
from harness.data.pipeline import DataBundle, plan_corpus, prepare_data
from harness.ds_config import build_ds_config
from harness.evaluation.evaluate import evaluate_during_training
from harness.evaluation.runner import eval_scorer
from harness.faults import (
    StopRequest,
    install_signal_handlers,
    interrupts_save,
    params_finite,
    stop_requested,
)
from harness.hub_refs import resolve_run_refs
from harness.metrics import MetricsLogger, peak_tflops
from harness.model import (
    LossModel,
    ModelStats,
    build_model,
    check_pretrained,
    model_stats,
    pretrained_rows,
)
from harness.objectives import build_objective
from harness.run_folder import check_run_paths, hold_run_lock, say_done
from harness.tokenizer import tokenizer_fingerprint

log = logging.getLogger("harness")


@dataclass
class Run:
    """Everything the loop needs, built once by `setup`."""

    cfg: Config
    engine: Any
    data: DataBundle
    loader: BlockLoader
    stats: ModelStats
    metrics: MetricsLogger
    start_step: int
    tokens_seen: int
    step: int = 0  # the last step trained (fit)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay matrices, not biases, norms or embeddings' 1-d params (transformers convention)."""
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (
            no_decay if p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias") else decay
        ).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def setup(cfg: Config) -> Run:
    """Initialise processes, data, model and DeepSpeed engine; resume when a checkpoint exists."""
    dist.configure_logging()
    check_run_paths(cfg)  # every folder the run writes, before any data work
    hold_run_lock(cfg.run.output_dir)  # one live run per folder
    resolve_run_refs(cfg)  # hf: tokenizer and model.path -> local folders, at a recorded commit
    # The corpus plan comes from metadata only: a bad path or an unreachable Hub data set fails
    # here, in seconds, before DeepSpeed starts.
    plan, _ = plan_corpus(cfg)
    dist.init_distributed()
    install_signal_handlers()
    ds_config = build_ds_config(cfg, dist.world_size())  # batch arithmetic for this world size
    state = _resume_state(cfg, plan.fingerprint)
    objective = build_objective(cfg.objective, cfg.run.seed)
    check_pretrained(cfg, objective.control_tokens)  # a model.path that cannot take the tokenizer
    if cfg.eval.scenarios:
        eval_scorer(cfg)  # a scorer that cannot be built fails the run now, not after training
    data = prepare_data(cfg, objective, plan)
    if state is not None:
        check_tokenizer(state, tokenizer_fingerprint(data.tokenizer))
    if dist.is_main():
        out = Path(cfg.run.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", config_to_yaml(cfg))
    lm = build_model(
        cfg.model, len(data.tokenizer), cfg.data.seq_len, cfg.run.seed, data.tokenizer.eos_token_id
    )
    objective.prepare_model(lm, data.tokenizer, pretrained_rows(cfg.model))
    if cfg.model.gradient_checkpointing:
        lm.gradient_checkpointing_enable()
    stats = model_stats(lm, cfg.data.seq_len)
    _log_setup(cfg, stats, ds_config, lm.config._attn_implementation)
    module = LossModel(
        lm, objective, objective.build_value_head(lm.config.hidden_size), cfg.model.compile
    )
    engine, loader_state, start_step, tokens_seen = _build_engine(cfg, module, ds_config, state)
    loader = BlockLoader(
        data.train,
        cfg.train.global_batch_size,
        cfg.train.micro_batch_size,
        dist.rank(),
        dist.world_size(),
        loader_state,
    )
    metrics = MetricsLogger(cfg, enabled=dist.is_main(), resume_step=start_step)
    return Run(cfg, engine, data, loader, stats, metrics, start_step, tokens_seen)


def _resume_state(cfg: Config, corpus_fingerprint: str) -> RunState | None:
    """The checkpoint to resume from (None: a fresh run), checked against the config.

    First rank 0 clears what a killed attempt left (temporary files, unpublished checkpoint
    folders); the other ranks wait in `resume_point`'s broadcast.
    """
    root = checkpoints_dir(cfg.run.output_dir)
    if dist.is_main():
        for line in remove_leftovers(Path(cfg.run.output_dir)) + remove_unpublished(root):
            log.info("interrupted attempt: %s", line)
    state = resume_point(root)
    if state is None:
        return None
    if cfg.checkpoint.resume == "never":
        raise ValueError(
            f"checkpoint.resume=never but {root} already has a checkpoint; choose another run.output_dir"
        )
    check_resumable(cfg, state, corpus_fingerprint)
    return state


def _log_setup(cfg: Config, stats: ModelStats, ds_config: dict[str, Any], attention: str) -> None:
    world = dist.world_size()
    log.info(
        "model %s: %s; attention %s%s",
        cfg.model.arch,
        stats.describe(),
        attention,
        ", backbone compiled" if cfg.model.compile else "",
    )
    log.info(
        "world %d, micro batch %d, gradient accumulation %d, global batch %d, %d steps, precision %s, ZeRO stage %s",
        world,
        cfg.train.micro_batch_size,
        gradient_accumulation_steps(cfg.train, world),
        cfg.train.global_batch_size,
        total_steps(cfg),
        cfg.train.precision,
        ds_config.get("zero_optimization", {}).get("stage", 0),
    )


def _build_engine(
    cfg: Config, module: LossModel, ds_config: dict[str, Any], state: RunState | None
) -> tuple[Any, LoaderState, int, int]:
    """(DeepSpeed engine, loader state, start step, tokens seen), restored from `state` if given."""
    import deepspeed

    root = checkpoints_dir(cfg.run.output_dir)
    load_tag = None
    if state is not None and state.world_size != dist.world_size():
        log.info(
            "checkpoint %s was written by %s ranks, resuming on %d",
            state.tag,
            state.world_size,
            dist.world_size(),
        )
        load_tag = to_universal(root, state.tag)
        ds_config["checkpoint"] = {**ds_config.get("checkpoint", {}), "load_universal": True}
    engine, _, _, _ = deepspeed.initialize(
        model=module,
        model_parameters=param_groups(module, cfg.train.weight_decay),
        config=ds_config,
    )
    if state is None:
        torch.manual_seed(cfg.run.seed + dist.rank())  # dropout differs across ranks, reproducibly
        return engine, LoaderState(seed=cfg.run.seed), 0, cfg.train.tokens_already_seen
    load_checkpoint(engine, root, state, load_tag)
    log.info(
        "resumed from %s at step %d (%d tokens)",
        root / state.tag,
        state.step,
        state.tokens,
    )
    return engine, replace(state.loader), state.step, state.tokens


def _to_device(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train_step(run: Run) -> dict[str, float]:
    """One optimizer step over this rank's micro batches; returns rank-averaged loss and stats.

    The rank-summed stop flag rides on the same all-reduce as the losses (key `stop_requested`).
    """
    engine = run.engine
    sums: dict[str, float] = {}
    micro_batches = run.loader.next_step()
    for batch in micro_batches:
        loss, stats = engine(**_to_device(batch, engine.device))
        engine.backward(loss)
        engine.step()
        for key, value in {"loss": loss, **stats}.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach().float())
    keys = sorted(sums)
    totals = dist.all_reduce_sum(
        [sums[k] for k in keys] + [1.0 if StopRequest.signal_name else 0.0], engine.device
    )
    n = len(micro_batches) * dist.world_size()
    out = {k: v / n for k, v in zip(keys, totals[:-1], strict=True)}
    out["stop_requested"] = float(totals[-1] > 0)
    return out


def _grad_norm(engine) -> float | None:
    norm = engine.get_global_grad_norm()
    if norm is None:
        return None
    return float(norm.item() if torch.is_tensor(norm) else norm)


def _save(run: Run, step: int) -> None:
    if not params_finite(run.engine):
        raise FloatingPointError(
            f"step {step}: the weights hold NaN/inf; refusing to write a checkpoint"
        )
    state = RunState(
        step=step,
        tokens=run.tokens_seen,
        seed=run.cfg.run.seed,
        loader=replace(run.loader.state),
        config=config_to_yaml(run.cfg),
        corpus_fingerprint=run.data.corpus_fingerprint,
        scored_dir=str(run.data.scored_dir),
        packed_dir=str(run.data.packed_dir),
        tokenizer_fingerprint=tokenizer_fingerprint(run.data.tokenizer),
    )
    log.info("step %d: saving a checkpoint", step)
    folder = save_checkpoint(
        run.engine,
        checkpoints_dir(run.cfg.run.output_dir),
        state,
        run.data.tokenizer,
        run.cfg.checkpoint.keep_last,
    )
    log.info("saved checkpoint %s", folder)


def _log_record(
    run: Run, step: int, out: dict[str, float], tokens: int, elapsed: float, peak: float
) -> dict[str, Any]:
    tokens_per_s = tokens / max(elapsed, 1e-9)
    return {
        "step": step,
        **{k: v for k, v in out.items() if k != "stop_requested"},
        "lr": float(run.engine.get_lr()[0]),
        "grad_norm": _grad_norm(run.engine),
        "tokens": run.tokens_seen,
        "tokens_per_s": tokens_per_s,
        "mfu": run.stats.flops_per_token * tokens_per_s / peak,
        "epoch": run.loader.epoch,
    }


def _check_step_finite(run: Run, step: int, out: dict[str, float], bad_steps: int) -> int:
    """Count consecutive non-finite steps (loss or gradient norm); stop after train.max_bad_steps."""
    norm = _grad_norm(run.engine)
    if math.isfinite(out["loss"]) and (norm is None or math.isfinite(norm)):
        return 0
    bad_steps += 1
    first = run.loader.state.blocks_consumed - run.cfg.train.global_batch_size
    blocks = [
        run.loader.block_index(p) for p in range(first, first + run.cfg.train.global_batch_size)
    ]
    log.warning(
        "step %d: non-finite loss %s / grad norm %s; the optimizer step is skipped (blocks %s)",
        step,
        out["loss"],
        norm,
        blocks,
    )
    if bad_steps >= run.cfg.train.max_bad_steps:
        raise FloatingPointError(
            f"{bad_steps} consecutive non-finite steps ({step - bad_steps + 1}..{step}); last batch: blocks {blocks} "
            f"of {run.data.train.folder}. Stopping without writing a checkpoint (train.max_bad_steps={run.cfg.train.max_bad_steps})"
        )
    return bad_steps


def fit(run: Run) -> dict[str, float]:
    """Train from `run.start_step` to the end (or a stop request); returns the last logged metrics."""
    cfg = run.cfg
    steps = total_steps(cfg)
    tokens_per_step = cfg.train.global_batch_size * cfg.data.seq_len
    peak = peak_tflops(cfg.logging.peak_tflops, cfg.train.precision) * 1e12 * dist.world_size()
    bar = None
    if dist.is_main() and cfg.logging.progress_bar:
        bar = tqdm(
            total=steps, initial=run.start_step, desc="train", unit="step", dynamic_ncols=True
        )
    with interrupts_save(), logging_redirect_tqdm(loggers=[logging.getLogger()]):
        dist.filter_console()  # the bar's handler too
        try:
            return _fit_steps(run, steps, tokens_per_step, peak, bar)
        finally:
            if bar is not None:
                bar.close()  # before the last lines, once
            run.metrics.close()


def _fit_steps(run: Run, steps: int, tokens_per_step: int, peak: float, bar) -> dict[str, float]:
    cfg = run.cfg
    last: dict[str, float] = {}
    window_start, window_tokens = time.perf_counter(), 0
    bad_steps = 0
    step = run.start_step
    label = f"{cfg.objective.name}_loss"  # the objective's loss (eval/lm_loss is the LM's)
    while step < steps:
        StopRequest.step = step + 1
        out = train_step(run)
        step += 1
        run.step = step
        run.tokens_seen += tokens_per_step
        window_tokens += tokens_per_step
        bad_steps = _check_step_finite(run, step, out, bad_steps)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({label: f"{out['loss']:.4f}"})
        # Step 1 and every `every_steps`: a resumed run logs the steps an uninterrupted one would.
        if step % cfg.logging.every_steps == 0 or step == steps or step == 1:
            last = _log_record(
                run, step, out, window_tokens, time.perf_counter() - window_start, peak
            )
            run.metrics.log(last)
            if bar is None:
                log.info(
                    "step %d/%d loss %.4f lr %.2e tokens/s %.0f",
                    *(step, steps, out["loss"], last["lr"], last["tokens_per_s"]),
                )
            window_start, window_tokens = time.perf_counter(), 0
        if step == steps and bar is not None:
            bar.close()  # the final evaluation, save and export log below a finished bar
        if _end_of_step(run, step, out["stop_requested"] > 0, last):
            break
    return last


def _end_of_step(run: Run, step: int, stop: bool, last: dict[str, float]) -> bool:
    """Evaluate, save and export where due after `step`; True when the run stops early here."""
    cfg = run.cfg
    is_last = step == total_steps(cfg)
    if (cfg.eval.every_steps and step % cfg.eval.every_steps == 0) or is_last:
        log.info("step %d: evaluating", step)
        ev = evaluate_during_training(run, step)  # held-out loss, samples, scores, diversity, KL
        if ev:
            run.metrics.log({"step": step, "tokens": run.tokens_seen, **ev})
            last.update(ev)
            log.info("step %d eval/lm_loss %.4f", step, ev.get("eval/lm_loss", float("nan")))
        # A signal that arrived during evaluation stops the run here too.
        stop = stop or stop_requested(run.engine.device)
    stop_at = cfg.train.stop_at_step is not None and step >= cfg.train.stop_at_step
    periodic = cfg.checkpoint.every_steps and step % cfg.checkpoint.every_steps == 0
    if periodic or is_last or stop or stop_at:
        _save(run, step)
    if is_last:
        export_after_training(cfg)  # <output_dir>/hf unless eval.export_hf is false
        return False
    if stop or stop_at:
        name = StopRequest.signal_name or "a stop signal on another rank"
        why = (
            ("received " + name if name.startswith(("SIG", "a stop")) else name)
            if stop
            else "train.stop_at_step"
        )
        log.info(
            "stopping after step %d (%s); checkpoint saved, rerun the same command to continue",
            step,
            why,
        )
        return True
    return False


def train(cfg: Config) -> dict[str, float]:
    """Set up and train a run to its end (resuming if possible)."""
    run = setup(cfg)
    if run.start_step >= total_steps(cfg):
        if run.start_step > total_steps(cfg):  # e.g. a longer run's folder under a smaller budget
            log.warning(
                "run.output_dir %s already holds a run at step %d, past this budget of %d steps "
                "(%s): nothing to do; choose another run.output_dir or raise the budget",
                cfg.run.output_dir,
                run.start_step,
                total_steps(cfg),
                "train.max_steps" if cfg.train.max_steps is not None else "train.max_tokens",
            )
        else:
            log.info("run already complete at step %d", run.start_step)
        # The attempt that saved the last checkpoint may have died while exporting it.
        if dist.broadcast_object(cfg.eval.export_hf and not hf_dir(cfg.run.output_dir).is_dir()):
            export_after_training(cfg)
        run.metrics.close()
        say_done(cfg.run.output_dir, run.start_step)
        return {}
    last = fit(run)
    if run.step == total_steps(cfg):
        say_done(cfg.run.output_dir, run.step)
    return last
