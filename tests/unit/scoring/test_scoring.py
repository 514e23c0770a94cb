"""Tests for harness/scoring: segmenters, the pep8/pii/toxicity scorers and build_scorer.

Run: pytest tests/unit/scoring/test_scoring.py  (offline; about half a minute, mostly imports of scrubadub,
scikit-learn and transformers).
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may touch the network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.scoring import (
    ExternalScorer,
    Scorer,
    build_scorer,
    make_record,
    segment_lines,
    segment_sentences,
)
from harness.scoring.pep8 import PEP8Scorer, default_style_options, pep8_line_scores

# --- segmenters -----------------------------------------------------------------------------------

_TRICKY = st.text(alphabet=st.sampled_from(list("ab .!?\n\r\t\x0c\u2028é")), max_size=60)


@given(_TRICKY)
def test_segment_lines_joins_back(text: str) -> None:
    lines = segment_lines(text)
    assert "".join(lines) == text
    assert all(lines) and all(line.endswith("\n") for line in lines[:-1])


@settings(max_examples=40, deadline=None)
@given(_TRICKY)
def test_segment_sentences_joins_back(text: str) -> None:
    assert "".join(segment_sentences(text)) == text


def test_segment_sentences_uses_spacy_sentencizer() -> None:
    text = "Hello world. This is me!  And\n\nnew para"
    assert segment_sentences(text) == ["Hello world. ", "This is me! ", " And\n\nnew para"]
    assert segment_sentences("") == []


# --- pep8 -----------------------------------------------------------------------------------------

_LONG = "z = '" + "a" * 80 + "'\n"
# (line, violations counted by hand under pycodestyle's defaults)
_PEP8_FILE = [
    ("import os\n", 0),
    ("def f(x):\n", 1),  # E302 expected 2 blank lines, found 0
    ("    y=x+1  \n", 2),  # E225 around "=" (E226 around "+" is ignored by default); W291
    ("    return y\n", 0),
    (_LONG, 2),  # E305 expected 2 blank lines after function; E501 line too long (86 > 79)
    ("a = b+c\n", 0),  # E226 only: in pycodestyle's default ignore list, as in the paper
    ("print(a)", 1),  # W292 no newline at end of file
]


def test_pep8_line_scores_match_hand_count() -> None:
    text = "".join(line for line, _ in _PEP8_FILE)
    record = PEP8Scorer().score_document(text)
    expected = [count / len(line) for line, count in _PEP8_FILE]  # newline counts as a character
    assert record["texts"] == [line for line, _ in _PEP8_FILE]
    assert "".join(record["texts"]) == text
    assert record["scores"] == expected
    assert record["avg_score"] == pytest.approx(sum(expected) / len(expected), rel=1e-15)
    assert record["num_sents"] == len(_PEP8_FILE)


def test_pep8_default_options_as_paper() -> None:
    options = default_style_options()
    assert options.max_line_length == 79
    assert "E226" in options.ignore and options.select == ()


def test_pep8_score_texts_is_violations_per_char() -> None:
    text = "".join(line for line, _ in _PEP8_FILE)
    total = sum(count for _, count in _PEP8_FILE)
    assert PEP8Scorer().score_texts([text, "x = 1\n", ""]) == [total / len(text), 0.0, 0.0]


def test_pep8_edge_cases() -> None:
    assert PEP8Scorer().score_document("") == {
        "texts": [],
        "scores": [],
        "avg_score": 0.0,
        "num_sents": 0,
    }
    assert pep8_line_scores("x=1") == (["x=1"], [2 / 3])  # E225, W292; no trailing newline
    assert pep8_line_scores("x = 1\r\n") == (["x = 1\r\n"], [0.0])
    # As the original: a syntax error reported past the last line gives the file zero scores.
    assert pep8_line_scores("x = (1,\n") == (["x = (1,\n"], [0.0])


# --- pii ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pii_scorer() -> Scorer:
    return build_scorer("pii")


def test_pii_counts_filth_per_character(pii_scorer: Scorer) -> None:
    contact = (
        "Write to jane.roe@example.org or call 415-555-2671, "
        "or visit https://example.com/about today. "
    )
    text = "This is a plain opening sentence. " + contact + "Nothing else here."
    record = pii_scorer.score_document(text)
    assert "".join(record["texts"]) == text
    assert record["texts"] == ["This is a plain opening sentence. ", contact, "Nothing else here."]
    # email + phone + URL = 3 filth objects in that sentence
    assert record["scores"] == [0.0, 3 / len(contact), 0.0]
    assert record["avg_score"] == pytest.approx(3 / len(contact) / 3)
    assert pii_scorer.score_texts(["", "no personal data at all"]) == [0.0, 0.0]


def test_pii_warns_once_without_spacy_model(caplog: pytest.LogCaptureFixture) -> None:
    from harness.scoring import pii

    pii._warned.clear()
    with caplog.at_level(logging.WARNING, logger="harness.scoring.pii"):
        pii.build_scrubber(spacy_model="no_such_spacy_model")
        pii.build_scrubber(spacy_model="no_such_spacy_model")
    messages = [r.getMessage() for r in caplog.records if "no_such_spacy_model" in r.getMessage()]
    assert len(messages) == 1 and "names" in messages[0]


# --- toxicity -------------------------------------------------------------------------------------


def test_toxicity_profanity_check_backend() -> None:
    scorer = build_scorer("toxicity", backend="profanity_check")
    neutral, profane = scorer.score_texts(
        ["Have a lovely day at the park.", "You are a fucking idiot, shit."]
    )
    assert 0.0 <= neutral < 0.5 < profane <= 1.0
    record = scorer.score_document("Have a lovely day. You are a fucking idiot.")
    assert record["texts"] == ["Have a lovely day. ", "You are a fucking idiot."]
    assert record["scores"][0] < record["scores"][1]


def test_toxicity_missing_detoxify_checkpoint_says_where(
    tmp_path: os.PathLike, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("PHF_DETOXIFY_CHECKPOINT", raising=False)
    with pytest.raises(FileNotFoundError) as info:
        build_scorer("toxicity")
    message = str(info.value)
    expected_path = os.path.join(
        str(tmp_path), "hub", "checkpoints", "toxic_original-c1212f89.ckpt"
    )
    assert expected_path in message
    assert "v0.1-alpha/toxic_original-c1212f89.ckpt" in message
    assert "profanity_check" in message
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        build_scorer("toxicity", checkpoint=str(tmp_path / "nowhere.ckpt"))


def _tiny_detoxify_checkpoint(folder: os.PathLike, ckpt_path: os.PathLike) -> object:
    """A random 1-layer BERT saved in Detoxify's checkpoint format, with its config and vocab."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "you", "are", "a", "nice", "idiot", "."]
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(words) + "\n")
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    config.save_pretrained(folder)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig.from_pretrained(folder, num_labels=6)).eval()
    classes = ["severe_toxic", "toxic", "obscene", "threat", "insult", "identity_hate"]
    arch = {
        "model_type": "bert-base-uncased",
        "model_name": "BertForSequenceClassification",
        "tokenizer_name": "BertTokenizer",
        "num_classes": 6,
    }
    config_dict = {"arch": {"args": arch}, "dataset": {"args": {"classes": classes}}}
    os.makedirs(os.path.dirname(ckpt_path), exist_ok=True)
    torch.save({"config": config_dict, "state_dict": model.state_dict()}, ckpt_path)
    return model


def test_toxicity_detoxify_loads_local_checkpoint(
    tmp_path: os.PathLike, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from transformers import BertTokenizer

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("PHF_DETOXIFY_CHECKPOINT", raising=False)
    ckpt = os.path.join(str(tmp_path), "hub", "checkpoints", "toxic_original-c1212f89.ckpt")
    model = _tiny_detoxify_checkpoint(tmp_path, ckpt)
    texts = ["you are a nice idiot.", "nice", "you " * 40]  # the last is truncated at 16 tokens
    tokenizer = BertTokenizer.from_pretrained(str(tmp_path))
    inputs = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=16)
    with torch.no_grad():
        expected = torch.sigmoid(model(**inputs).logits)[:, 1].tolist()  # "toxic" is class 1 here

    with pytest.raises(FileNotFoundError, match="bert-base-uncased.*huggingface_config_path"):
        build_scorer("toxicity", huggingface_config_path=str(tmp_path / "no_such_folder"))
    from_hub_cache = build_scorer("toxicity", huggingface_config_path=str(tmp_path))
    assert from_hub_cache.score_texts(texts) == pytest.approx(expected, abs=1e-6)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("PHF_DETOXIFY_CHECKPOINT", ckpt)
    from_env = build_scorer("toxicity", huggingface_config_path=str(tmp_path), batch_size=2)
    record = from_env.score_document("you are a nice idiot. nice")
    assert record["texts"] == ["you are a nice idiot. ", "nice"]
    assert record["scores"] == pytest.approx(expected[:2], abs=1e-6)


# --- build_scorer and the record ------------------------------------------------------------------


class CharCountScorer(Scorer):
    """A user scorer subclassing Scorer: score = number of `char` in the text."""

    def __init__(self, char: str = "x") -> None:
        self.char = char

    def score_texts(self, texts: list[str]) -> list[float]:
        return [float(t.count(self.char)) for t in texts]


class PlainLengthScorer:
    """A duck-typed user scorer: only score_texts; counts its calls."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.calls = 0

    def score_texts(self, texts: list[str]) -> list[float]:
        self.calls += 1
        return [self.scale * len(t) for t in texts]


class NoScoreTexts:
    pass


def test_build_scorer_class_path_subclass() -> None:
    scorer = build_scorer(f"{__name__}.CharCountScorer", char="a")
    assert isinstance(scorer, CharCountScorer) and scorer.char == "a"
    record = scorer.score_document("a cat. A bat sat!")
    assert record == make_record(["a cat. ", "A bat sat!"], [2.0, 2.0])


def test_build_scorer_wraps_duck_typed_class_and_batches() -> None:
    scorer = build_scorer(
        f"{__name__}.PlainLengthScorer", scale=2.0, segmenter="lines", batch_size=2
    )
    assert isinstance(scorer, ExternalScorer)
    records = scorer.score_documents(["ab\ncd\n", "", "e\nf\ng"])
    assert [r["texts"] for r in records] == [["ab\n", "cd\n"], [], ["e\n", "f\n", "g"]]
    assert [r["scores"] for r in records] == [[6.0, 6.0], [], [4.0, 4.0, 2.0]]
    assert [r["avg_score"] for r in records] == [6.0, 0.0, 10 / 3]
    assert scorer.inner.calls == 3  # 5 segments in batches of 2


@pytest.mark.parametrize(
    ("name", "error", "fragment"),
    [
        ("nonsense", ValueError, "'nonsense'"),
        ("no_such_pkg.mod.Scorer", ValueError, "no_such_pkg.mod.Scorer"),
        (f"{__name__}.Missing", ValueError, "Missing"),
        (f"{__name__}.NoScoreTexts", TypeError, "NoScoreTexts"),
    ],
)
def test_build_scorer_errors_name_the_value(name: str, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        build_scorer(name)


def test_make_record_schema() -> None:
    assert make_record(["a ", "b"], [0.5, 0]) == {
        "texts": ["a ", "b"],
        "scores": [0.5, 0.0],
        "avg_score": 0.25,
        "num_sents": 2,
    }
    with pytest.raises(ValueError, match="2 segments but 1 scores"):
        make_record(["a ", "b"], [0.5])


def test_scorer_segmenter_names_the_segmenter_without_building_the_scorer():
    from harness.scoring.base import scorer_segmenter

    assert scorer_segmenter("pep8", {}) == "lines"
    assert scorer_segmenter("pii", {}) == scorer_segmenter("toxicity", {}) == "sentences"
    external = f"{__name__}.PlainLengthScorer"
    assert scorer_segmenter(external, {}) == build_scorer(external).segmenter == "sentences"
    built = build_scorer(external, segmenter="lines")
    assert scorer_segmenter(external, {"segmenter": "lines"}) == built.segmenter == "lines"
    assert scorer_segmenter(f"{__name__}.CharCountScorer", {}) == "sentences"
    with pytest.raises(ValueError, match="unknown scorer"):
        scorer_segmenter("nope", {})
