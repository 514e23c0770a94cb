"""Translate the original's `generation` section (GenerateAndScoreCallback) into `eval`.

The original ran a list of scenarios, each with its own sample count and `generate_kwargs`
(`apo/callbacks.py`); the harness has one `unconditional` and one `prompted` scenario. Their
`num_samples`, `max_new_tokens` and `min_new_tokens` (from `max_length` and `min_length`, which
counted BOS and the control token too) are taken from the unconditional scenario (else the first),
with `eval.scenario_options` for the other where it differs; `temperature`, `top_p` and
`hit_threshold` (`num_hits_threshold`) are shared, and a note names a scenario whose value differs.
Prompts were drawn with replacement (`random.choices`), but all of them in order behind a control
token: `eval.prompt_sampling` random, or cycle for a conditional model. With `SelfBlEU` among the
metrics, every sample is a self-BLEU hypothesis, as in the original (`eval.self_bleu_samples`).
The scorer of the samples is the task's scorer, so `scorer_config.class_name` also sets `data.scorer`.

The original's `kl_gpt3_callback` (KLGPT3Callback: KL(GPT-3 || model) on GPT-3's samples) becomes
`eval.api_kl_*`: `gpt3_kwargs.model_name` -> `api_kl_model`, `num_samples` -> `api_kl_samples`,
`max_tokens` -> `api_kl_max_tokens` (the callback's defaults where absent: text-davinci-002, 4096,
128). The KL is measured at every evaluation (`eval.every_steps`); the API is any
OpenAI-compatible server (OPENAI_API_KEY, OPENAI_BASE_URL), see harness/evaluation/api_kl.py.
`kl_gpt3_callback: null` (e.g. `--override kl_gpt3_callback=None`) leaves it off.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from harness.atomic import atomic_write_text
from harness.compat.original import OriginalConfig
from harness.control_tokens import CONTROL_TOKENS
from harness.tasks import BUILTIN_TASKS

# The original scorer class names, from the tasks that know them.
SCORERS = {t.original_scorer: name for name, t in BUILTIN_TASKS.items() if t.original_scorer}
METRICS = ("Length", "NGramStats", "SelfBlEU", "Compilability")  # apo/metrics.py
PROMPT_CACHE = Path(".cache/phf/compat")
_PER_SCENARIO = ("num_samples", "max_new_tokens", "min_new_tokens")
_SHARED = ("temperature", "top_p", "hit_threshold")
KL = "kl_gpt3_callback"
# KLGPT3Callback's and GPT3's defaults (apo/callbacks.py, apo/kl_gpt3.py).
KL_DEFAULTS = {"model_name": "text-davinci-002", "num_samples": 4096, "max_tokens": 128}
RETIRED = ("davinci", "code-cushman-001", "text-davinci-002")  # the paper's, gone from OpenAI


def convert_prompts(path: Path) -> str:
    """The original's `{"text": ...}` prompt file as the harness's `{"prompt": ...}` file (cached copy)."""
    records = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{lineno}: not a JSON object") from None
        if record is not None and not isinstance(record, dict):
            raise ValueError(f"{path}:{lineno}: not a JSON object")
        if record is not None and "prompt" not in record and "text" not in record:
            raise ValueError(f'{path}:{lineno}: expected a "text" (or "prompt") field')
        records += [record] if record is not None else []
    if all("prompt" in r for r in records):
        return str(path)
    body = "".join(json.dumps({"prompt": r.get("prompt", r.get("text"))}) + "\n" for r in records)
    out = PROMPT_CACHE / f"prompts-{hashlib.sha256(body.encode()).hexdigest()[:12]}.jsonl"
    if not out.is_file():
        atomic_write_text(out, body)  # ranks may convert at the same time
    return str(out)


def _lengths(o: OriginalConfig, g: str, prefixed: bool) -> tuple[int, int]:
    """(max_new_tokens, min_new_tokens) of a scenario's generate_kwargs `g`: max_length and
    min_length counted the prompt, BOS (plus the control token); the harness counts new tokens."""
    start = 1 + (1 if prefixed else 0)
    max_new = o.value(f"{g}.max_new_tokens", "integer")
    if max_new is None:
        max_new = max(1, o.value(f"{g}.max_length", "integer", 20) - start)  # 20: transformers'
    min_new = o.value(f"{g}.min_new_tokens", "integer")
    if min_new is None:
        min_new = max(0, o.value(f"{g}.min_length", "integer", 0) - start)
    return max_new, min_new


def _scenario(o: OriginalConfig, i: int, scorer: str | None, conditional: bool) -> dict[str, Any]:
    """One scenario's kind and shared settings; checks the keys the harness decides itself."""
    p = f"generation.scenario_configs[{i}]"
    prompts = o.value(f"{p}.prompts_path", "str")
    kind = "prompted" if prompts else "unconditional"
    prefix = o.value(f"{p}.prefix", "str")
    if prefix is not None and (prefix != CONTROL_TOKENS[0] or not conditional):
        o.error(
            f"{p}.prefix",
            f"only {CONTROL_TOKENS[0]} for a conditionally trained model (added automatically)",
        )
    before = o.value(f"{p}.prompt_before_control", "bool", False)
    if prompts and prefix and not before:
        o.error(
            f"{p}.prompt_before_control",
            "the control token always comes before the prompt here: set it to true",
        )
    with_prompt = o.value(f"{p}.use_prompt_for_scoring", "bool", False)
    if prompts and with_prompt != (scorer is not None and BUILTIN_TASKS[scorer].is_code):
        o.error(
            f"{p}.use_prompt_for_scoring",
            "fixed by task here: code samples are scored with their prompt, prose without",
        )
    if o.value(f"{p}.token_type_id", "integer") is not None:
        o.error(f"{p}.token_type_id", "token type ids are not supported here")
    g = f"{p}.generate_kwargs"
    if o.value(f"{g}.do_sample", "bool", False) is not True:
        o.error(f"{g}.do_sample", "the harness always samples: set do_sample: true")
    if o.value(f"{g}.top_k", "integer", 50) != 0:  # 50: the transformers default when absent
        o.error(f"{g}.top_k", "the harness samples without top-k (nucleus only): set top_k: 0")
    max_new, min_new = _lengths(o, g, prefix is not None)
    out = {
        "kind": kind,
        "name": o.value(f"{p}.name", "str", kind),  # the kind is what counts here
        "num_samples": o.value(f"{p}.num_samples", "integer", 32),
        "max_new_tokens": max_new,
        "min_new_tokens": min_new,
        "temperature": o.value(f"{g}.temperature", "number", 1.0),
        "top_p": o.value(f"{g}.top_p", "number", 1.0),
        "hit_threshold": o.value(f"{p}.num_hits_threshold", "number", 0.5),
        # random.choices, except for prompts behind a control token: all of them, in order
        "prompt_sampling": "cycle" if prefix else "random",
    }
    if prompts:
        if Path(prompts).is_file():
            try:
                out["prompts"] = convert_prompts(Path(prompts))
            except ValueError as err:
                o.error(f"{p}.prompts_path", str(err))
        else:
            o.note(
                f"{p}.prompts_path",
                f"{prompts} not found here: the shipped prompt set for the task is used",
            )
    return out


def _scenario_options(
    o: OriginalConfig, scenarios: list[dict[str, Any]], main: dict[str, Any]
) -> dict[str, dict[str, int]]:
    """eval.scenario_options where a scenario's own values differ from `main`'s; a note for a
    shared value (temperature, top_p, hit_threshold) that differs."""
    options = {}
    for s in scenarios:
        own = {k: s[k] for k in _PER_SCENARIO if s[k] != main[k]}
        if own:
            options[s["kind"]] = own
        differ = [k for k in _SHARED if s[k] != main[k]]
        if differ:
            o.notes.append(
                f"generation.scenario_configs ({s['name']}): "
                f"{', '.join(f'{k}={s[k]}' for k in differ)} not used: all scenarios share "
                f"{', '.join(f'{k}={main[k]}' for k in differ)} here (from scenario {main['name']})"
            )
    return options


def translate_generation(o: OriginalConfig, conditional: bool) -> tuple[str | None, dict[str, Any]]:
    """(data.scorer, eval section) from `generation`; errors and notes are collected on `o`."""
    g = "generation"
    name = o.value(f"{g}.scorer_config.class_name", "str")
    scorer = SCORERS.get(name or "")
    if name is None:
        o.errors.append(f"{g}.scorer_config.class_name: required, it names the task's scorer")
    elif scorer is None:
        o.error(
            f"{g}.scorer_config.class_name", f"unknown scorer {name!r}; known: {', '.join(SCORERS)}"
        )
    ev: dict[str, Any] = {"every_steps": o.value(f"{g}.every_n_steps", "integer", 1000)}
    if scorer is not None and BUILTIN_TASKS[scorer].original_sample_options:
        ev["scorer_options"] = dict(BUILTIN_TASKS[scorer].original_sample_options)
    if f"{g}.batch_size" in o.leaves:
        ev["generation_batch_size"] = o.value(f"{g}.batch_size", "integer", 16)
    metrics = [
        v
        for k, v in o.leaves.items()
        if re.fullmatch(rf"{g}\.metrics_configs\[\d+\]\.class_name", k)
    ]
    for key, value in list(o.leaves.items()):
        if re.fullmatch(rf"{g}\.metrics_configs\[\d+\]\.class_name", key) and value not in METRICS:
            o.error(key, f"unknown metric {value!r}; the original's are {', '.join(METRICS)}")
            o.take(key)
    found = {
        int(m.group(1)) for k in o.leaves if (m := re.match(rf"{g}\.scenario_configs\[(\d+)\]", k))
    }
    o.take(f"{g}.scenario_configs")  # an empty list: no scenarios
    scenarios = [_scenario(o, i, scorer, conditional) for i in sorted(found)]
    kinds = [s["kind"] for s in scenarios]
    ev["scenarios"] = list(dict.fromkeys(kinds))
    if kinds.count("prompted") > 1:
        o.errors.append(
            f"{g}.scenario_configs: at most one scenario with prompts_path is supported here"
        )
    if not scenarios:
        return scorer, ev
    main = next((s for s in scenarios if s["kind"] == "unconditional"), scenarios[0])
    ev.update({key: main[key] for key in (*_PER_SCENARIO, *_SHARED)})
    prompted = [s for s in scenarios if s["kind"] == "prompted"]
    ev["prompt_sampling"] = (prompted or [main])[0]["prompt_sampling"]
    if any("prompts" in s for s in prompted):
        ev["prompts"] = next(s["prompts"] for s in prompted if "prompts" in s)
    if "SelfBlEU" in metrics:
        ev["self_bleu_samples"] = max(s["num_samples"] for s in scenarios)  # every sample
    options = _scenario_options(o, scenarios, main)
    if options:
        ev["scenario_options"] = options
    return scorer, ev


def translate_kl_callback(o: OriginalConfig, conditional: bool, ev: dict[str, Any]) -> None:
    """`kl_gpt3_callback` -> `eval.api_kl_*` in `ev` (in place); errors and notes are collected on `o`."""
    if not o.has(KL):
        return
    if KL in o.leaves:  # a section without keys: null (off here; the original failed) or {}
        section = o.take(KL)
        if section is None:
            return
        if section != {}:
            o.error(KL, f"expected a mapping of the callback's options, got {section!r}")
            return
    model = o.value(f"{KL}.gpt3_kwargs.model_name", "str", KL_DEFAULTS["model_name"])
    ev["api_kl_model"] = model
    ev["api_kl_samples"] = o.value(f"{KL}.num_samples", "integer", KL_DEFAULTS["num_samples"])
    ev["api_kl_max_tokens"] = o.value(f"{KL}.max_tokens", "integer", KL_DEFAULTS["max_tokens"])
    prefix = o.value(f"{KL}.prefix", "str")
    if prefix is not None and (prefix != CONTROL_TOKENS[0] or not conditional):
        o.error(
            f"{KL}.prefix",
            f"only {CONTROL_TOKENS[0]} for a conditionally trained model (added automatically)",
        )
    written = f"{KL}.every_n_steps" in o.leaves
    every = o.value(f"{KL}.every_n_steps", "integer", 1000)  # CustomCallback's default
    if every != ev.get("every_steps"):
        message = (
            f"KL is measured at every evaluation here: every {ev.get('every_steps')} steps "
            f"(eval.every_steps, from generation.every_n_steps), not every {every}"
        )
        if written:
            o.note(f"{KL}.every_n_steps", message)
        else:
            o.notes.append(f"{KL}.every_n_steps (default {every}): {message}")
    retired = " (OpenAI's own API no longer serves it)" if model in RETIRED else ""
    o.notes.append(
        f"{KL} -> eval.api_kl_model={model}: KL({model} || model) on {ev['api_kl_samples']} samples "
        "of an OpenAI-compatible completions API at every evaluation; set OPENAI_API_KEY, and "
        f"OPENAI_BASE_URL for a server other than OpenAI's{retired}; when the API cannot be used, "
        f"training skips eval/kl_api with a note (to turn it off: --override {KL}=None)"
    )
