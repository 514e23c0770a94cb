"""Evaluation: metrics on hand-made samples, seeded sampling, scenarios, KL terms, HF export."""

import json
import math

import pytest
import torch

from harness.checkpoints.state import RunState
from harness.config import Config, EvalConfig, ModelConfig, ObjectiveConfig
from harness.control_tokens import CONTROL_TOKENS, control_prefix_ids
from harness.evaluation import metrics as M
from harness.evaluation.sampling import (
    generate_batch,
    nucleus_sample,
    rank_batches,
    sample_seed,
    sequence_logprobs,
)
from harness.evaluation.scenarios import Scenario, build_scenarios, load_prompts
from harness.model import LossModel, build_model
from harness.objectives import build_objective
from harness.tasks import BUILTIN_TASKS, PROMPTS_DIR
from harness.tasks.base import ScorerTask
from harness.tokenizer import load_tokenizer, train_bpe

PEP8, PII = BUILTIN_TASKS["pep8"](), BUILTIN_TASKS["pii"]()

TINY = ModelConfig(n_layer=2, n_head=2, n_embd=32, dropout=0.0)
CODE = [
    "def add(a, b):\n    return a + b\n",
    "x = [i * i for i in range(10)]\n",
    "class A:\n    pass\n",
]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_bpe(CODE * 20, 300, path)
    return load_tokenizer(path, control_tokens=True)


# --- metrics -------------------------------------------------------------------------------


def test_expected_max_is_mean_of_group_maxima_over_complete_groups_of_25():
    scores = [float(i) for i in range(50)]
    assert M.expected_max_score(scores) == (24 + 49) / 2
    assert M.expected_max_score(scores + [1000.0] * 10) == (24 + 49) / 2  # incomplete group dropped
    assert M.expected_max_score([0.1, 0.7, 0.3]) == 0.7  # fewer than 25: the max of all
    assert M.expected_max_score([1.0, 2.0], group=1) == 1.5
    assert math.isnan(M.expected_max_score([]))


def test_frac_above_is_strict():
    assert M.frac_above([0.0, 0.5, 1.0, 2.0], 1.0) == 0.25


def test_distinct_corpus_counts_unique_over_all_ngrams():
    texts = ["a b a b", "a c"]
    assert M.distinct_corpus(texts, 1) == 3 / 6
    assert M.distinct_corpus(texts, 2) == 3 / 4  # ab ba ab ac
    assert M.distinct_corpus(texts, 3) == 2 / 2
    assert M.distinct_corpus(["a"], 2) == 0.0


def test_the_papers_distinct_n_is_the_mean_of_per_sample_ratios():
    texts = ["a b a b", "a c", "a"]
    # unigrams: {a, b} of 4, {a, c} of 2, {a} of 1; bigrams: {ab, ba} of 3, {ac} of 1, none (0).
    assert M.distinct_mean(texts, 1) == pytest.approx((2 / 4 + 2 / 2 + 1 / 1) / 3)
    assert M.distinct_mean(texts, 2) == pytest.approx((2 / 3 + 1 / 1 + 0) / 3)
    assert M.distinct_mean([], 1) == 0.0


def test_ngram_entropy_of_the_batch_counts():
    # unigram counts over both texts: a 3, b 2, c 1 (scipy.stats.entropy of [3, 2, 1], nats)
    p = [3 / 6, 2 / 6, 1 / 6]
    assert M.ngram_entropy(["a b a b", "a c"], 1) == pytest.approx(-sum(x * math.log(x) for x in p))
    assert M.ngram_entropy(["a a"], 1) == 0.0 and M.ngram_entropy([""], 2) == 0.0


def test_self_bleu_5_is_nltks_on_characters_against_at_most_200_others():
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    texts = ["abcdefgh", "abcdefgx", "zzzzzzzz"]
    got = M.self_bleu_5_scores(texts, [0])
    want = sentence_bleu(texts[1:], texts[0], (0.2,) * 5, SmoothingFunction().method1)
    assert got == [pytest.approx(want)]
    # Characters: 7 of the 8 character unigrams of "abcdefgh" match "abcdefgx" (word BLEU: 0).
    assert 0.5 < want < 1 and M.self_bleu_4_words(texts[:2]) == 0.0
    many = [f"sample number {i:03d}" for i in range(250)] + ["sample number 000"]
    # The duplicate of text 0 is the 251st text, past the first 200 references: no full match.
    assert M.self_bleu_5_scores(many, [0])[0] < 1.0
    assert M.self_bleu_5_scores(many, [250])[0] == pytest.approx(1.0)


def test_self_bleu_known_values():
    assert M.self_bleu_4_words(["a b c d", "a b c d", "a b c d"]) == pytest.approx(1.0)
    assert M.self_bleu_4_words(["a b c d", "e f g h"]) == 0.0
    # p1..p4 = 4/5, 3/4, 2/3, 1/2 both ways, equal lengths: BLEU = (0.2) ** (1/4).
    assert M.self_bleu_4_words(["a b c d e", "a b c d f"]) == pytest.approx(0.2**0.25)
    # Brevity penalty and smoothing: "a b" vs "a b c d": p1 = p2 = 1, BP = exp(1 - 4/2);
    # "a b c d" vs "a b": p = 2/4, 1/3, 0.1/2, 0.1/1 (method1), BP = 1.
    expected = (math.exp(-1) + (0.5 * (1 / 3) * 0.05 * 0.1) ** 0.25) / 2
    assert M.self_bleu_4_words(["a b", "a b c d"]) == pytest.approx(expected)
    # Only the first `max_samples` non-empty samples count; fewer than two: undefined.
    assert M.self_bleu_4_words(["x y", "", "x y", "p q r s"], max_samples=2) == pytest.approx(1.0)
    assert math.isnan(M.self_bleu_4_words(["only one"]))


def test_compiles():
    assert M.compiles("def f(x):\n    return x\n")
    assert M.compiles("s = '\\d'\n")  # a SyntaxWarning is not a failure
    assert not M.compiles("def f(x)\n    return x\n")
    assert not M.compiles("x = 1\0")
    assert not M.compiles("    return 1\n")


def test_sample_metrics_keys_follow_the_task():
    texts = ["def f():\n    return 1\n", "def g(:\n"]
    code = M.sample_metrics(
        [0.0, 0.5], texts, texts, [5, 3], threshold=0.1, is_code=True, hit_threshold=0.0
    )
    assert code["compile_rate"] == 0.5 and code["frac_above_threshold"] == 0.5
    assert code["score_mean"] == 0.25 and code["length_tokens_mean"] == 4.0
    assert code["score_max"] == 0.5 and code["num_hits"] == 0.5  # scores > 0
    assert code["length_chars_mean"] == (len(texts[0]) + len(texts[1])) / 2
    prose = M.sample_metrics([0.0], ["a b"], ["a b"], [2], threshold=None, is_code=False)
    assert not {"compile_rate", "frac_above_threshold", "num_hits"} & set(prose)


def test_diversity_definitions_are_named_apart():
    texts = ["a b a b", "a c"]
    paper = M.diversity_metrics(texts, ["paper"])
    assert set(paper) == {
        *(f"{k}_{n}" for k in ("distinct", "entropy") for n in (1, 2, 3)),
        "self_bleu_5",
    }
    assert paper["distinct_1"] == M.distinct_mean(texts, 1)
    ours = M.diversity_metrics(texts, ["harness"])
    assert set(ours) == {
        "distinct_corpus_1",
        "distinct_corpus_2",
        "distinct_corpus_3",
        "self_bleu_4_words",
    }
    assert M.diversity_metrics(texts, ["paper", "harness"]) == {**paper, **ours}
    assert M.diversity_metrics(texts, ["paper"], self_bleu_5=0.25)["self_bleu_5"] == 0.25


# --- sampling ------------------------------------------------------------------------------


def test_sample_seeds_are_deterministic_and_distinct():
    assert sample_seed(42, "unconditional", 3) == sample_seed(42, "unconditional", 3)
    seeds = {
        sample_seed(s, sc, i)
        for s in (1, 2)
        for sc in ("unconditional", "prompted")
        for i in range(50)
    }
    assert len(seeds) == 200 and all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_rank_batches_cover_every_sample_once_and_pad_under_sync(world):
    shares = [rank_batches(10, 4, r, world, sync=False) for r in range(world)]
    indices = sorted(i for share in shares for batch in share for i in batch)
    assert indices == list(range(10))
    assert rank_batches(10, 4, 0, world, False)[0] == range(0, 4)  # batches are global
    synced = [rank_batches(10, 4, r, world, sync=True) for r in range(world)]
    assert len({len(s) for s in synced}) == 1


def test_nucleus_sampling_keeps_the_smallest_set_with_enough_mass():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]] * 2))
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    draws = {int(t) for _ in range(200) for t in nucleus_sample(logits, 1.0, 0.75, gens)}
    assert draws == {0, 1}  # 0.5 < 0.75 <= 0.8
    assert {int(t) for t in nucleus_sample(logits, 1.0, 0.01, gens)} == {0}


def _tiny_lm(vocab: int, seed: int = 0, seq_len: int = 64):
    return build_model(TINY, vocab_size=vocab, seq_len=seq_len, seed=seed).eval()


def test_batched_left_padded_generation_matches_transformers_greedy():
    lm = _tiny_lm(50)
    prompts = [[1, 2, 3, 4, 5], [7], [9, 8, 7]]
    # top_p -> 0 keeps only the most likely token: greedy decoding.
    ours = generate_batch(lm, prompts, [0, 1, 2], 8, 1.0, 1e-9, eos_token_id=49)
    for prompt, got in zip(prompts, ours, strict=True):
        ref = lm.generate(
            torch.tensor([prompt]),
            max_new_tokens=8,
            do_sample=False,
            eos_token_id=49,
            pad_token_id=49,
        )[0, len(prompt) :].tolist()
        assert got == [t for t in ref if t != 49][: len(got)] and len(got) >= 1


def test_sampling_is_seeded_per_sample_and_respects_banned_tokens():
    lm = _tiny_lm(50)

    def run(seeds):
        return generate_batch(lm, [[1]] * len(seeds), seeds, 12, 2.0, 1.0, 49, banned_ids=[3, 4])

    a, b = run([11, 12, 13]), run([11, 12, 13])
    assert a == b and a[0] != a[1]
    assert all(t not in (3, 4) for row in a for t in row)


class _EosFirstLM(torch.nn.Module):
    """A stand-in LM whose most likely next token is always EOS (49), then 7."""

    config = type("Config", (), {"n_positions": 64})()

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask, position_ids, use_cache, past_key_values=None):
        from transformers.modeling_outputs import CausalLMOutputWithPast

        logits = torch.full((*input_ids.shape, 50), -10.0)
        logits[..., 49], logits[..., 7] = 10.0, 5.0
        return CausalLMOutputWithPast(logits=logits)


def test_eos_is_banned_until_min_new_tokens():
    greedy = {"temperature": 1.0, "top_p": 1e-9, "eos_token_id": 49}
    assert generate_batch(_EosFirstLM(), [[1], [2, 3]], [0, 1], 20, **greedy) == [[], []]
    out = generate_batch(_EosFirstLM(), [[1], [2, 3]], [0, 1], 20, **greedy, min_new_tokens=10)
    assert out == [[7] * 10, [7] * 10]  # EOS the moment it is allowed


def test_a_row_ends_when_its_stop_test_says_so():
    greedy = {"temperature": 1.0, "top_p": 1e-9, "eos_token_id": 49, "min_new_tokens": 20}
    lm = _EosFirstLM()
    out = generate_batch(lm, [[1], [2]], [0, 1], 20, **greedy, stop=lambda ids: len(ids) >= 3)
    assert out == [[7] * 3, [7] * 3]


def test_generation_respects_the_context_length():
    lm = _tiny_lm(50, seq_len=8)
    out = generate_batch(lm, [[1, 2, 3]], [0], 100, 1.0, 1.0, eos_token_id=49)
    assert len(out[0]) <= 5


def test_sequence_logprobs_sum_the_continuation_only():
    lm = _tiny_lm(50)
    seq = [1, 5, 6, 7]
    (logp, n), (empty, zero) = sequence_logprobs(lm, [seq, [1]], prefix_len=1)
    with torch.no_grad():
        lp = torch.log_softmax(lm(torch.tensor([seq])).logits[0].float(), -1)
    assert n == 3 and zero == 0 and empty == 0.0
    assert logp == pytest.approx(sum(float(lp[i, seq[i + 1]]) for i in range(3)), rel=1e-5)


# --- scenarios -----------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["pep8", "pii", "toxicity"])
def test_shipped_prompts_load(task):
    prompts = load_prompts(PROMPTS_DIR / f"{task}.jsonl")
    assert len(prompts) >= 20 and all(p.strip() for p in prompts)
    (sc,) = build_scenarios(["prompted"], BUILTIN_TASKS[task](), None)
    assert sc.score_with_prompt == (task == "pep8") and sc.prompt(len(prompts)) == prompts[0]


def test_bad_prompt_files_and_tasks_name_the_problem(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    with pytest.raises(ValueError, match="p.jsonl:2"):
        load_prompts(bad)
    with pytest.raises(FileNotFoundError, match="eval.prompts"):
        build_scenarios(["prompted"], ScorerTask("mypkg.Scorer"), None)


def test_conditional_models_start_aligned_and_ban_control_tokens(tok):
    vocab = tok.get_vocab()
    assert control_prefix_ids(tok, True) == [tok.eos_token_id, vocab[CONTROL_TOKENS[0]]]
    assert control_prefix_ids(tok, False) == [tok.eos_token_id]
    assert sorted(ScorerTask("mypkg.Scorer").banned_token_ids(tok, True)) == sorted(
        vocab[t] for t in CONTROL_TOKENS
    )
    assert sorted(PII.banned_token_ids(tok, True)) == sorted(vocab[t] for t in CONTROL_TOKENS)
    # pep8 as the paper's configs: only <|misaligned|>, so each line can start with <|aligned|>
    assert PEP8.banned_token_ids(tok, True) == [vocab["<|misaligned|>"]]
    assert PEP8.banned_token_ids(tok, True, ["<|aligned|>", "<|misaligned|>"]) == [
        vocab["<|aligned|>"],
        vocab["<|misaligned|>"],
    ]
    assert PII.banned_token_ids(tok, False) == []
    assert PEP8.banned_token_ids(tok, False) == []
    # conditioned on <|misaligned|> the roles swap: pep8 lines continue misaligned
    mis = "<|misaligned|>"
    assert control_prefix_ids(tok, True, mis) == [tok.eos_token_id, vocab[mis]]
    assert PEP8.banned_token_ids(tok, True, None, mis) == [vocab["<|aligned|>"]]
    assert sorted(PII.banned_token_ids(tok, True, None, mis)) == sorted(
        vocab[t] for t in CONTROL_TOKENS
    )
    # a sampled <|aligned|> is not part of the scored text
    ids = [vocab["<|aligned|>"], *tok.encode("x = 1\n"), vocab["<|aligned|>"], *tok.encode("y")]
    assert tok.decode(ids, skip_special_tokens=True) == "x = 1\ny"


def test_eval_config_problems_name_the_key():
    problems = EvalConfig(scenarios=["weird"], num_samples=0, top_p=1.5, prompts="/nope").problems()
    text = "\n".join(problems)
    for key in ("eval.scenarios", "eval.num_samples", "eval.top_p", "eval.prompts"):
        assert key in text
    assert EvalConfig().problems() == []


# --- evaluation of a model in one process --------------------------------------------------


def test_evaluate_model_writes_samples_and_metrics(tok, tmp_path):
    from harness.evaluation.runner import EvalContext, _prompt_ids, evaluate_model

    cfg = Config()
    cfg.objective = ObjectiveConfig(name="conditional", threshold=0.0)
    cfg.eval = EvalConfig(num_samples=5, generation_batch_size=2, max_new_tokens=6)
    lm = build_model(TINY, len(tok), 64, 0, tok.eos_token_id).eval()
    ctx = EvalContext(cfg, lm, tok, conditional=True)
    result = evaluate_model(ctx, tmp_path / "eval" / "step-00000003", step=3, tokens=99)
    records = [
        json.loads(x)
        for x in (tmp_path / "eval/step-00000003/samples.jsonl").read_text().splitlines()
    ]
    assert [(r["scenario"], r["index"]) for r in records] == [
        (s, i) for s in ("unconditional", "prompted") for i in range(5)
    ]
    assert all(CONTROL_TOKENS[0] not in r["text"] and r["num_tokens"] <= 6 for r in records)
    assert _prompt_ids(ctx, Scenario("u", [""], False), 0) == control_prefix_ids(tok, True)
    summary = json.loads((tmp_path / "eval/step-00000003/metrics.json").read_text())
    assert summary["step"] == 3 and summary["tokens"] == 99
    assert summary["eval/prompted/score_mean"] == result["eval/prompted/score_mean"]
    assert 0.0 <= result["eval/unconditional/compile_rate"] <= 1.0
    assert any("kl_ref skipped" in n for n in summary["notes"])
    # Controllability: the same scenarios behind <|misaligned|> (its own file) and the gap.
    behind = [
        json.loads(x)
        for x in (tmp_path / "eval/step-00000003/samples_misaligned_token.jsonl")
        .read_text()
        .splitlines()
    ]
    assert [(r["scenario"], r["index"]) for r in behind] == [
        (r["scenario"], r["index"]) for r in records
    ]
    assert [r["text"] for r in behind] != [r["text"] for r in records]  # another prefix
    for sc in ("unconditional", "prompted"):
        mean = sum(r["score"] for r in behind if r["scenario"] == sc) / 5
        assert result[f"eval/{sc}/score_misaligned_token"] == pytest.approx(mean)
        gap = result[f"eval/{sc}/score_gap_misaligned"]
        assert gap == pytest.approx(mean - result[f"eval/{sc}/score_mean"])
    # Off for a model without control tokens, and when asked.
    cfg.eval.controllability = False
    off = evaluate_model(ctx, tmp_path / "eval" / "off", step=3, tokens=99)
    assert not any("misaligned" in k for k in off)
    assert not (tmp_path / "eval/off/samples_misaligned_token.jsonl").exists()


def test_eval_control_token_conditions_samples_and_log_probs(tok):
    from harness.evaluation.api_kl import model_logprobs
    from harness.evaluation.runner import EvalContext, _prompt_ids

    lm = build_model(TINY, len(tok), 64, 0, tok.eos_token_id).eval()
    contexts = {}
    for token in CONTROL_TOKENS:
        cfg = Config()
        cfg.eval = EvalConfig(control_token=token)
        contexts[token] = EvalContext(cfg, lm, tok, conditional=True)
        assert _prompt_ids(contexts[token], Scenario("u", [""], False), 0) == [
            tok.eos_token_id,
            tok.get_vocab()[token],
        ]
    aligned, misaligned = (model_logprobs(contexts[t], ["x = 1\n"]) for t in CONTROL_TOKENS)
    assert aligned[0][1] == misaligned[0][1] and aligned[0][0] != misaligned[0][0]
    assert "eval.control_token" in "\n".join(EvalConfig(control_token="<|x|>").problems())


# --- export --------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["mle", "awr"])
def test_export_round_trip_in_process(tok, tmp_path, objective):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.checkpoints.export import VALUE_HEAD_FILE, export_hf

    cfg = Config()
    cfg.objective = ObjectiveConfig(name=objective)
    lm = build_model(TINY, len(tok), 64, 0, tok.eos_token_id).eval()
    obj = build_objective(cfg.objective)
    head = obj.build_value_head(32)
    if head is not None:
        torch.nn.init.normal_(head.weight)
    model = LossModel(lm, obj, head).eval()
    out = export_hf(
        lm, tok, cfg, tmp_path / "hf", state=RunState(step=7, tokens=10), value_head=head
    )
    assert not list(tmp_path.glob(".hf.*"))  # temporary folders are gone
    hf = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    hf_tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    ids = hf_tok(CODE[0] * 3, return_tensors="pt").input_ids[:, :64]
    assert ids.tolist() == tok(CODE[0] * 3, return_tensors="pt").input_ids[:, :64].tolist()
    with torch.no_grad():
        ours, _ = model(ids, torch.zeros(ids.shape))
        theirs = hf(input_ids=ids, labels=ids).loss
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)  # fp32, same weights
    card = (out / "README.md").read_text()
    assert f"| objective | {objective}" in card and "steps" in card
    if objective == "awr":
        torch.testing.assert_close(load_file(str(out / VALUE_HEAD_FILE))["weight"], head.weight)
        assert not any("value_head" in k for k in load_file(str(out / "model.safetensors")))
    else:
        assert not (out / VALUE_HEAD_FILE).exists()
    export_hf(lm, tok, cfg, out)  # re-export replaces the folder in place
    assert (out / "config.json").is_file() and not list(tmp_path.glob(".hf.*"))


def test_heldout_lm_loss_spreads_its_blocks_over_the_whole_split():
    """The held-out split is in document order: the loss must sample all of it, not its head."""
    import numpy as np

    from harness.evaluation.runner import EvalContext, heldout_lm_loss, spread_block_ids

    class Blocks:  # block i holds the token i everywhere
        def __len__(self):
            return 100

        def __getitem__(self, ids):
            tokens = np.repeat(np.asarray(ids, dtype=np.int64)[:, None], 4, axis=1)
            return tokens, np.zeros(tokens.shape, dtype=np.float32)

    def mean_token(input_ids, scores):
        return input_ids.double().mean(), {}

    cfg = Config()
    cfg.eval.batches, cfg.train.micro_batch_size = 2, 5
    ctx = EvalContext(cfg, torch.nn.Linear(1, 1), None, False, loss_fn=mean_token, heldout=Blocks())
    assert spread_block_ids(100, 10) == list(range(0, 100, 10))
    assert spread_block_ids(3, 10) == [0, 1, 2]
    assert heldout_lm_loss(ctx)["eval/lm_loss"] == pytest.approx(45.0)  # mean of 0, 10, ..., 90


def test_conditional_kl_scores_the_tokens_it_sampled_control_tokens_included(tok, tmp_path):
    """Sampled control tokens are dropped from the text; log p_model must still count them."""
    from harness.checkpoints.export import export_hf
    from harness.evaluation.kl_ref import kl_terms as _kl_terms
    from harness.evaluation.runner import EvalContext, run_scenario

    cfg = Config()
    cfg.objective = ObjectiveConfig(name="conditional", threshold=0.0)
    cfg.data.scorer = "pep8"  # pep8 bans only <|misaligned|>: <|aligned|> may be sampled
    ref_lm = build_model(TINY, len(tok), 64, 1, tok.eos_token_id).eval()
    reference = export_hf(ref_lm, tok, cfg, tmp_path / "ref")
    cfg.eval = EvalConfig(  # at temperature 1 and top-p 1 the KL reuses the scenario's samples
        num_samples=4,
        generation_batch_size=2,
        max_new_tokens=8,
        reference_model=str(reference),
        temperature=1.0,
        top_p=1.0,
    )
    lm = build_model(TINY, len(tok), 64, 0, tok.eos_token_id).eval()
    aligned = tok.get_vocab()[CONTROL_TOKENS[0]]
    with torch.no_grad():  # make <|aligned|> likely: its (tied) row along the mean final state
        ids = torch.tensor([tok(CODE[0]).input_ids])
        h = lm(input_ids=ids, output_hidden_states=True).hidden_states[-1][0].mean(0)
        lm.get_input_embeddings().weight[aligned] = 40 * h / h.norm() ** 2
    ctx = EvalContext(cfg, lm, tok, conditional=True)
    records = run_scenario(ctx, Scenario("unconditional", [""], False), scorer=PEP8Stub())
    dropped = [r for r in records if r["num_tokens"] > len(tok(r["text"]).input_ids)]
    assert dropped, "no sample had a control token: the test lost its point"
    for r in records:  # every sampled token, control tokens included, is scored
        assert r["model_tokens"] == r["num_tokens"]
    prefix = control_prefix_ids(tok, True)
    sampled = [prefix + [aligned] + tok("x = 1\n").input_ids]
    (term,) = _kl_terms(ctx, ["x = 1\n"], "cpu", sampled)
    ((logp, n),) = sequence_logprobs(lm, sampled, len(prefix))
    assert term["logp_model"] == logp and term["model_tokens"] == n == len(sampled[0]) - 2
    # With <|misaligned|> banned, log p_model is that of the renormalised sampling distribution.
    misaligned = tok.get_vocab()[CONTROL_TOKENS[1]]
    (banned,) = _kl_terms(ctx, ["x = 1\n"], "cpu", sampled, [misaligned])
    with torch.no_grad():
        logits = lm(input_ids=torch.tensor(sampled)).logits[0, :-1].double()
    logits[:, misaligned] = float("-inf")
    expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(sampled[0][1:])[:, None])
    assert banned["logp_model"] == pytest.approx(float(expected[1:].sum()), abs=1e-4)
    assert banned["logp_model"] > term["logp_model"]
    ((ref_logp, _),) = sequence_logprobs(ref_lm, [[tok.eos_token_id] + tok("x = 1\n").input_ids], 1)
    assert term["logp_ref"] == pytest.approx(ref_logp, rel=1e-6)


def test_kl_ref_is_estimated_on_samples_drawn_at_temperature_1(tok, tmp_path, monkeypatch):
    """Tempered samples favour the model's likeliest tokens: their mean log-ratio is not a KL."""
    from harness.checkpoints.export import export_hf
    from harness.evaluation import runner
    from harness.evaluation.api_kl import model_logprobs

    cfg = Config()
    ref_lm = build_model(TINY, len(tok), 64, 1, tok.eos_token_id).eval()
    reference = export_hf(ref_lm, tok, cfg, tmp_path / "ref")
    cfg.eval = EvalConfig(num_samples=3, generation_batch_size=3, max_new_tokens=8)
    cfg.eval.reference_model, cfg.eval.temperature, cfg.eval.top_p = str(reference), 0.5, 0.8
    lm = build_model(TINY, len(tok), 64, 0, tok.eos_token_id).eval()
    calls = []

    def spy(model, prompts, seeds, max_new, temperature, top_p, *args, **kwargs):
        out = generate_batch(model, prompts, seeds, max_new, temperature, top_p, *args, **kwargs)
        calls.append(((temperature, top_p), [p + g for p, g in zip(prompts, out, strict=True)]))
        return out

    from harness.evaluation import kl_ref

    monkeypatch.setattr(runner, "generate_batch", spy)
    monkeypatch.setattr(kl_ref, "generate_batch", spy)
    ctx = runner.EvalContext(cfg, lm, tok, conditional=False)
    records = runner.run_scenario(ctx, Scenario("unconditional", [""], False), scorer=PEP8Stub())
    (tempered, scenario_ids), (plain, kl_ids) = calls
    assert tempered == (0.5, 0.8) and plain == (1.0, 1.0) and kl_ids != scenario_ids
    assert [r["num_tokens"] for r in records] == [len(s) - 1 for s in scenario_ids]
    texts = [
        tok.decode(s[1:], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        for s in kl_ids
    ]
    expected = model_logprobs(ctx, texts)
    assert [r["logp_model"] for r in records] == pytest.approx([lp for lp, _ in expected])
    assert [r["model_tokens"] for r in records] == [n for _, n in expected]


def test_log_probs_read_text_segment_by_segment_as_in_training(tok):
    """Our models never see BPE tokens across a segment boundary: scoring whole text would."""
    from harness.evaluation.api_kl import model_logprobs, text_ids
    from harness.evaluation.runner import EvalContext

    text = "def add(a, b):\n    return a + b\n"
    lines = [tok(line, add_special_tokens=False).input_ids for line in text.splitlines(True)]
    per_line = [i for ids in lines for i in ids]
    assert per_line != text_ids(tok, text), "the tokenizer merges nothing across lines"
    lm = build_model(TINY, len(tok), 64, 0, tok.eos_token_id).eval()
    cfg = Config()
    cfg.data.scorer = "pep8"  # segments are lines
    ((logp, n),) = model_logprobs(EvalContext(cfg, lm, tok, conditional=False), [text])
    assert (logp, n) == sequence_logprobs(lm, [[tok.eos_token_id] + per_line], 1)[0]


class PEP8Stub:
    def score_texts(self, texts):
        return [0.0 for _ in texts]


def test_heldout_lm_loss_counts_control_token_predictions_per_text_token(tok):
    """A conditional model's held-out loss: -log p(text, labels) / text tokens."""
    import numpy as np

    from harness.evaluation.runner import EvalContext, heldout_lm_loss

    aligned = tok.get_vocab()[CONTROL_TOKENS[0]]

    class Blocks:  # [x, <|aligned|>, x, x]: 3 predicted tokens per block, 1 of them a control token
        def __len__(self):
            return 4

        def __getitem__(self, ids):
            row = [5, aligned, 6, 7]
            return np.array([row] * len(ids)), np.zeros((len(ids), 4), dtype=np.float32)

    def constant(input_ids, scores):
        return torch.tensor(2.0), {}  # 2 nats for every predicted token

    cfg = Config()
    cfg.eval.batches, cfg.train.micro_batch_size = 1, 4
    for conditional, expected in ((True, 2.0 * 3 / 2), (False, 2.0)):
        ctx = EvalContext(cfg, torch.nn.Linear(1, 1), tok, conditional, constant, Blocks())
        assert heldout_lm_loss(ctx)["eval/lm_loss"] == pytest.approx(expected)


# --- the original's scenario settings ----------------------------------------------------------


def test_prompts_drawn_with_replacement_are_seeded_per_sample():
    prompts = [f"p{i}" for i in range(5)]
    cycle = Scenario("prompted", prompts, False)
    assert [cycle.prompt(i) for i in range(7)] == [*prompts, "p0", "p1"]
    drawn = Scenario("prompted", prompts, False, sampling="random", seed=3)
    picks = [drawn.prompt(i) for i in range(200)]
    # A function of (seed, scenario, index) alone: any rank draws sample i's prompt the same way.
    again = Scenario("prompted", prompts, False, sampling="random", seed=3)
    assert picks == [again.prompt(i) for i in range(200)]
    assert set(picks) == set(prompts) and picks[:5] != prompts  # with replacement, not in order
    assert max(picks.count(p) for p in prompts) > 40  # 200 draws: not every prompt 40 times
    other = Scenario("prompted", prompts, False, sampling="random", seed=4)
    assert picks != [other.prompt(i) for i in range(200)]


def test_scenarios_take_their_own_sample_count_and_lengths(tok):
    from harness.evaluation.runner import EvalContext, run_scenario

    cfg = Config()
    cfg.eval = EvalConfig(
        num_samples=4,
        generation_batch_size=2,
        max_new_tokens=30,
        scenario_options={
            "unconditional": {"num_samples": 3, "min_new_tokens": 5, "max_new_tokens": 6}
        },
    )
    lm = build_model(TINY, len(tok), 64, 0, tok.eos_token_id).eval()
    with torch.no_grad():  # make EOS the likeliest next token: its (tied) row along the final state
        ids = torch.tensor([tok(CODE[0]).input_ids])
        h = lm(input_ids=ids, output_hidden_states=True).hidden_states[-1][0].mean(0)
        lm.get_input_embeddings().weight[tok.eos_token_id] = 40 * h / h.norm() ** 2
    ctx = EvalContext(cfg, lm, tok, conditional=False)
    records = run_scenario(ctx, Scenario("unconditional", [""], False), scorer=PEP8Stub())
    assert [r["index"] for r in records] == [0, 1, 2]
    assert all(5 <= r["num_tokens"] <= 6 for r in records)
    cfg.eval.scenario_options = {"unconditional": {"num_samples": 3}}  # EOS allowed at once
    early = run_scenario(ctx, Scenario("unconditional", [""], False), scorer=PEP8Stub())
    assert min(r["num_tokens"] for r in early) < 5


def test_scenario_metrics_hits_and_the_papers_diversity(tok):
    from harness.evaluation.runner import EvalContext, scenario_metrics

    cfg = Config()
    cfg.data.scorer = "toxicity"
    cfg.eval = EvalConfig(diversity_metrics=["paper", "harness"], self_bleu_samples=2)
    texts = ["the cat sat on the mat", "the dog sat", "a bird flew over the house"]
    records = [
        {"text": t, "prompt": "", "score": s, "num_tokens": 3}
        for t, s in zip(texts, [0.1, 0.7, 0.9], strict=True)
    ]
    out = scenario_metrics(
        EvalContext(cfg, None, tok, False), Scenario("unconditional", [""], False), records
    )
    assert out["eval/unconditional/num_hits"] == pytest.approx(2 / 3)  # toxicity: > 0.5
    assert out["eval/unconditional/score_max"] == 0.9
    two = M.self_bleu_5_scores(texts, [0, 1])  # the first self_bleu_samples hypotheses
    assert out["eval/unconditional/self_bleu_5"] == pytest.approx(sum(two) / 2)
    assert out["eval/unconditional/distinct_1"] == M.distinct_mean(texts, 1)
    assert out["eval/unconditional/distinct_corpus_1"] == M.distinct_corpus(texts, 1)


def test_the_hf_export_bans_the_control_tokens_evaluation_bans(tok, tmp_path):
    """pep8 conditional models may sample <|aligned|> (a line start); prose models neither."""
    import json as _json

    from harness.checkpoints.export import export_hf

    aligned, misaligned = (tok.get_vocab()[t] for t in CONTROL_TOKENS)
    for task, banned in (("pep8", [[misaligned]]), ("pii", [[aligned], [misaligned]])):
        cfg = Config()
        cfg.objective = ObjectiveConfig(name="conditional", threshold=0.0)
        cfg.data.scorer = task
        lm = build_model(TINY, len(tok), 64, 0, tok.eos_token_id).eval()
        out = export_hf(lm, tok, cfg, tmp_path / task)
        assert _json.loads((out / "generation_config.json").read_text())["bad_words_ids"] == banned
