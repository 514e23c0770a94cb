"""GLUE: the readers of both layouts, the metrics by hand, the classifier, and a 1-epoch finetune.

The data are synthetic, in the official layouts: CoLA (classification, a TSV without header) and
STS-B (regression, sentence pairs), as GLUE TSVs and as `datasets` folders.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cli.downstream import glue_main
from harness.config import ModelConfig
from harness.downstream import glue_data as G
from harness.downstream.glue import GlueSettings, SequenceClassifier, encode, pad_batch, run_task
from harness.model import build_model
from harness.tokenizer import load_tokenizer, train_bpe
from tests.integration.launch import check, python_run, tiny_config

WORDS = "the cat dog sat ran on a mat log red blue big small quickly slowly".split()
STSB_HEADER = (
    "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
)


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + "."


def synthetic(n: int, seed: int) -> dict[str, list]:
    """CoLA and STS-B rows: sentences, acceptability labels and similarity scores."""
    rng = random.Random(seed)
    a = [_sentence(rng) for _ in range(n)]
    b = [_sentence(rng) for _ in range(n)]
    return {
        "cola": [(s, int("cat" in s)) for s in a],
        "stsb": [(x, y, round(rng.uniform(0, 5), 3)) for x, y in zip(a, b, strict=True)],
    }


def write_tsv_layout(root: Path, splits: dict[str, dict[str, list]]) -> None:
    """CoLA/{train,dev}.tsv (no header: source, label, original mark, sentence) and STS-B/."""
    for split, rows in splits.items():
        name = "train.tsv" if split == "train" else "dev.tsv"
        cola = [f"gj04\t{label}\t{'' if label else '*'}\t{s}" for s, label in rows["cola"]]
        stsb = [STSB_HEADER] + [
            f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{x}\t{y}\t{score}"
            for i, (x, y, score) in enumerate(rows["stsb"])
        ]
        for folder, lines in (("CoLA", cola), ("STS-B", stsb)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / name).write_text("\n".join(lines) + "\n")


def write_datasets_layout(root: Path, splits: dict[str, dict[str, list]]) -> None:
    """DIR/cola and DIR/stsb DatasetDicts with nyu-mll/glue's columns, saved with save_to_disk."""
    from datasets import Dataset, DatasetDict

    for task in ("cola", "stsb"):
        parts = {}
        for split, rows in splits.items():
            if task == "cola":
                columns = {
                    "sentence": [s for s, _ in rows[task]],
                    "label": [y for _, y in rows[task]],
                }
            else:
                columns = {
                    "sentence1": [x for x, _, _ in rows[task]],
                    "sentence2": [y for _, y, _ in rows[task]],
                    "label": [s for _, _, s in rows[task]],
                }
            columns["idx"] = list(range(len(rows[task])))
            parts[split] = Dataset.from_dict(columns)
        DatasetDict(parts).save_to_disk(str(root / task))


SPLITS = {"train": synthetic(40, 0), "validation": synthetic(16, 1)}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    write_tsv_layout(root / "tsv", SPLITS)
    write_datasets_layout(root / "datasets", SPLITS)
    return root / "tsv", root / "datasets"


@pytest.mark.parametrize("name", ["cola", "stsb"])
def test_both_layouts_read_the_same_examples(layouts, name):
    tsv, datasets = layouts
    task = G.TASKS[name]
    assert G.data_layout(tsv, task) == "tsv" and G.data_layout(datasets, task) == "datasets"
    for got in (G.read_task(tsv, task), G.read_task(datasets, task)):
        for split, part in zip(("train", "validation"), got, strict=True):
            rows = SPLITS[split][name]
            assert part.text_a == [r[0] for r in rows]
            assert part.labels == pytest.approx([float(r[-1]) for r in rows], abs=1e-6)
            assert part.text_b == (None if name == "cola" else [r[1] for r in rows])


def test_tsv_reader_maps_nli_labels_reads_by_header_and_skips_short_rows(tmp_path):
    folder = tmp_path / "MNLI"
    folder.mkdir()
    header = "index\tpromptID\tsentence1\tsentence2\tlabel1\tgold_label"
    rows = [
        "0\t1\tA man.\tA person.\tentailment\tentailment",
        "1\t2\tA.\tB.\tneutral\tcontradiction",
    ]
    (folder / "train.tsv").write_text("\n".join([header, *rows, "2\t3\ttoo short"]) + "\n")
    (folder / "dev_matched.tsv").write_text(
        "\n".join([header, rows[1].replace("contradiction", "neutral")]) + "\n"
    )
    train, dev = G.read_task(tmp_path, G.TASKS["mnli"])
    assert (train.text_a, train.text_b, train.labels) == (
        ["A man.", "A."],
        ["A person.", "B."],
        [0.0, 2.0],
    )
    assert dev.labels == [1.0]  # nyu-mll/glue ids: entailment 0, neutral 1, contradiction 2
    (folder / "train.tsv").write_text(header + "\n0\t1\tA.\tB.\tx\tmaybe\n")
    with pytest.raises(ValueError, match="train.tsv:2: label 'maybe' is not one of"):
        G.read_task(tmp_path, G.TASKS["mnli"])


def test_mrpc_header_with_byte_order_mark(tmp_path):
    folder = tmp_path / "MRPC"
    folder.mkdir()
    text = '\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said "hi".\tHe spoke.\n'
    for name in ("train.tsv", "dev.tsv"):
        (folder / name).write_text(text, encoding="utf-8")
    train, _ = G.read_task(tmp_path, G.TASKS["mrpc"])
    assert (train.text_a, train.text_b, train.labels) == (['He said "hi".'], ["He spoke."], [1.0])


def test_metrics_against_hand_computed_values():
    assert G.accuracy([1, 0, 1, 1], [1, 0, 0, 1]) == 0.75
    assert G.f1_binary([1, 0, 1, 1], [1, 0, 0, 1]) == pytest.approx(0.8)  # tp 2, fp 1, fn 0
    # tp 2, fp 1, tn 2, fn 0: (2*2 - 1*0) / sqrt(3 * 2 * 3 * 2) = 4 / 6
    assert G.matthews_corr([1, 1, 0, 0, 1], [1, 0, 0, 0, 1]) == pytest.approx(2 / 3, abs=1e-12)
    assert G.matthews_corr([1, 1, 1], [1, 0, 1]) == 0.0  # an empty margin
    # dx = [-1.5, -.5, .5, 1.5], dy = [-3, -1, 0, 4]: 11 / sqrt(5 * 26)
    assert G.pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / np.sqrt(130), abs=1e-12)
    # Tied ranks are averaged: x ranks [0, 1.5, 1.5, 3], y ranks [0, 2, 1, 3] -> 4.5 / sqrt(4.5 * 5)
    assert G.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / np.sqrt(22.5), abs=1e-12)
    assert G.spearman([1, 2, 3], [10, 20, 300]) == pytest.approx(1.0)
    stsb = G.task_metrics(G.TASKS["stsb"], [1, 2, 3, 4], [2, 4, 5, 9])
    assert set(stsb) == {"pearson", "spearman"}
    assert G.task_score(stsb) == pytest.approx(100 * (11 / np.sqrt(130) + 1.0) / 2)
    assert set(G.task_metrics(G.TASKS["qqp"], [1], [1])) == {"f1", "accuracy"}


def test_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="unknown \\['colaa'\\]; known: cola,sst2"):
        G.parse_tasks("colaa,sst2")
    assert [t.name for t in G.parse_tasks("SST2, cola,sst2")] == ["sst2", "cola"]


def test_missing_data_error_names_the_folder_and_what_to_download(tmp_path, capsys):
    # The checkpoint does not exist either: the data are checked first, before any model loads.
    args = ["--checkpoint", str(tmp_path / "no-run"), "--data_dir", str(tmp_path / "glue")]
    assert glue_main([*args, "--tasks", "rte", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: GLUE data missing") and len(err.splitlines()) == 1
    assert str(tmp_path / "glue" / "rte") in err and str(tmp_path / "glue" / "RTE") in err
    assert "load_dataset('nyu-mll/glue', 'rte')" in err and "gluebenchmark.com" in err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    texts = [r[0] for r in SPLITS["train"]["cola"]]
    train_bpe(texts * 5, 300, path)
    tok = load_tokenizer(path)
    return build_model(
        ModelConfig(n_layer=1, n_head=2, n_embd=32), len(tok), 64, 0, tok.eos_token_id
    ), tok


def test_classifier_reads_the_last_non_pad_token_whatever_the_padding(tiny_lm):
    lm, tok = tiny_lm
    torch.manual_seed(0)
    model = SequenceClassifier(lm, 3).eval()
    seqs = [[5, 6, 7], [8, 9, 10, 11, 12, 13]]
    ids, mask = pad_batch(seqs, tok.eos_token_id)
    assert (
        ids[0].tolist() == [5, 6, 7] + [tok.eos_token_id] * 3
        and mask[0].tolist() == [1] * 3 + [0] * 3
    )
    with torch.no_grad():
        batched = model(ids, mask)
        alone = torch.cat([model(*pad_batch([s], tok.eos_token_id)) for s in seqs])
        body = lm.base_model(input_ids=torch.tensor([seqs[0]])).last_hidden_state[0, -1]
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)  # same up to fp32 rounding
    torch.testing.assert_close(batched[0], model.head(body), rtol=1e-5, atol=1e-6)


def test_pairs_are_bos_a_eos_b_eos_cut_longest_first(tiny_lm):
    _, tok = tiny_lm
    eos = tok.eos_token_id
    split = G.GlueSplit(["the cat sat on the mat " * 4], ["a dog."], [1.0])
    a = tok(split.text_a[0], add_special_tokens=False).input_ids
    b = tok(split.text_b[0], add_special_tokens=False).input_ids
    (ids,) = encode(tok, split, 12)
    assert ids == [eos, *a[: 12 - 3 - len(b)], eos, *b, eos] and len(ids) == 12
    (single,) = encode(tok, G.GlueSplit(split.text_a, None, [1.0]), 10)
    assert single == [eos, *a[:8], eos]


def test_finetune_is_seeded(layouts, tiny_lm):
    lm, tok = tiny_lm
    settings = GlueSettings(epochs=1, batch_size=8, limit_train=16)
    runs = [run_task(lm, tok, G.TASKS["stsb"], layouts[0], settings, seed=3) for _ in range(2)]
    assert runs[0]["metrics"] == runs[1]["metrics"] and runs[0]["steps"] == 2
    assert runs[0]["train_examples"] == 16 and runs[0]["eval_examples"] == 16


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-step run of the tiny config, trained by scripts/train.py in a subprocess."""
    root = tmp_path_factory.mktemp("run")
    cfg = tiny_config(
        root,
        data={"max_documents": 20},
        train={"max_steps": 2, "global_batch_size": 2, "micro_batch_size": 2},
        checkpoint={"every_steps": 0},
        eval={"every_steps": 0, "batches": 1},
    )
    check(python_run("train.py", ["--config", str(cfg)], timeout=300))
    return root / "run"


def test_one_epoch_finetune_of_a_checkpoint_writes_glue_json(layouts, tiny_run, tmp_path, capsys):
    tsv, datasets = layouts
    data = tmp_path / "glue"
    data.mkdir()
    (data / "CoLA").symlink_to(tsv / "CoLA")  # one task as TSVs, the other as a datasets folder
    (data / "stsb").symlink_to(datasets / "stsb")
    out = tmp_path / "out"
    args = ["--checkpoint", str(tiny_run), "--data_dir", str(data), "--tasks", "cola,stsb"]
    assert glue_main([*args, "--epochs", "1", "--batch_size", "8", "--out", str(out)]) == 0
    result = json.loads((out / "glue.json").read_text())
    assert result["complete"] and list(result["tasks"]) == ["cola", "stsb"]
    cola, stsb = result["tasks"]["cola"], result["tasks"]["stsb"]
    assert set(cola["metrics"]) == {"matthews_corr"} and set(stsb["metrics"]) == {
        "pearson",
        "spearman",
    }
    assert cola["steps"] == 5 and cola["train_examples"] == 40 and stsb["eval_examples"] == 16
    assert np.isfinite(cola["train_loss_last"]) and np.isfinite(stsb["train_loss_last"])
    assert result["average"] == pytest.approx((cola["score"] + stsb["score"]) / 2)
    assert result["source"]["step"] == 2 and result["settings"]["seed"] == 7  # the run's seed
    printed = json.loads(capsys.readouterr().out)
    assert printed["average"] == round(result["average"], 2)
    assert not list(out.glob(".*tmp*"))
