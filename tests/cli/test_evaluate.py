"""
Evaluation tests: BEIR loading, metrics, exact MaxSim and the evaluate command on a tiny BEIR folder.
"""

import json
import math
import sys

import numpy as np
import pytest

from txtai_muvera.cli import main
from txtai_muvera.core.encoder import LateEncoder
from txtai_muvera.cli.beir import readbeir as beir
from txtai_muvera.cli.evaluate import Evaluate
from txtai_muvera.cli.metrics import trecmetrics as measure

from helpers import TEXTS

# Judged queries and their relevant documents (graded), plus a query absent from the qrels
QUERIES = {
    "q1": "virus cases",
    "q2": "lottery ticket winner",
    "q3": "frog species in the rainforest",
    "q4": "diabetes and obesity",
    "q9": "unjudged query",
}
QRELS = {"q1": {"d0": 1}, "q2": {"d4": 1, "d5": 0}, "q3": {"d10": 2}, "q4": {"d8": 2, "d7": 1}}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """
    Tiny BEIR folder: 12 documents (some with titles), 5 queries of which 4 are judged, qrels with a header line.
    """

    path = tmp_path_factory.mktemp("beir")
    with open(path / "corpus.jsonl", "w", encoding="utf-8") as f:
        for x, text in enumerate(TEXTS):
            f.write(json.dumps({"_id": f"d{x}", "title": "News" if x % 3 == 0 else "", "text": text}) + "\n")

    with open(path / "queries.jsonl", "w", encoding="utf-8") as f:
        for uid, text in QUERIES.items():
            f.write(json.dumps({"_id": uid, "text": text, "metadata": {}}) + "\n")

    (path / "qrels").mkdir()
    with open(path / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for uid, documents in QRELS.items():
            for document, relevance in documents.items():
                f.write(f"{uid}\t{document}\t{relevance}\n")

    return path


@pytest.fixture(scope="module")
def results(pylate_model, folder, tmp_path_factory):
    """
    Runs the evaluate command once with every option and returns (JSON results, plot path, printed output).
    """

    output = tmp_path_factory.mktemp("evaluate")
    arguments = ["evaluate", str(pylate_model), str(folder), "--dtype", "float32", "--json", str(output / "results.json")]
    arguments += ["--plot", str(output / "plot.png"), "--sweep", "5,100", "--compare", "txtai", "--compare-queries", "2", "--no-progress"]

    assert main(arguments) == 0
    with open(output / "results.json", encoding="utf-8") as f:
        return json.load(f), output / "plot.png"


def brute(encoder, queries, texts):
    """
    Exact MaxSim ranking of every document, float64 numpy.
    """

    documents = [m.astype(np.float64) for m in encoder.encode(texts, category="data")]
    run = {}
    for uid, query in queries.items():
        q = encoder.encode([query], category="query")[0].astype(np.float64)
        scores = [(q @ d.T).max(axis=1).mean() for d in documents]
        run[uid] = {f"d{x}": float(score) for x, score in enumerate(scores)}

    return run


def test_beir(folder):
    ids, texts, queries, qrels = beir(folder)

    # Title + " " + text, unjudged query skipped, relevance grades kept (0 included)
    assert ids == [f"d{x}" for x in range(len(TEXTS))]
    assert texts[0] == f"News {TEXTS[0]}" and texts[1] == f" {TEXTS[1]}"
    assert list(queries) == ["q1", "q2", "q3", "q4"]
    assert qrels == QRELS

    # Query limit and missing split
    assert list(beir(folder, limit=2)[2]) == ["q1", "q2"]
    with pytest.raises(FileNotFoundError, match="qrels/dev.tsv"):
        beir(folder, split="dev")


def test_measure_hand_computed():
    qrels = {"a": {"x": 1, "y": 1}, "b": {"z": 2}}

    # Query a: relevant at ranks 2 and 4; query b: no results (counts as 0)
    run = {"a": {"n1": 4.0, "x": 3.0, "n2": 2.0, "y": 1.0}}
    metrics = measure(qrels, run)

    ndcg = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert metrics["ndcg@10"] == pytest.approx(ndcg / 2)
    assert metrics["recall@100"] == pytest.approx(0.5)
    assert metrics["mrr@10"] == pytest.approx(0.25)

    # MRR@10 ignores a first relevant document below rank 10
    deep = {"a": {**{f"n{x}": 100.0 - x for x in range(10)}, "x": 1.0}}
    assert measure({"a": qrels["a"]}, deep)["mrr@10"] == 0.0
    assert measure({"a": qrels["a"]}, deep)["recall@100"] == pytest.approx(0.5)


def test_measure_missing_pytrec_eval(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytrec_eval", None)
    with pytest.raises(ImportError, match=r"txtai-muvera\[evaluate\]"):
        measure({"a": {"x": 1}}, {"a": {"x": 1.0}})


def test_exact_equals_brute_force(pylate_model, folder):
    evaluate = Evaluate(pylate_model, folder, progress=False)
    encoder = LateEncoder(str(pylate_model), gpu=False)

    # Blocks of 2 queries cross the block boundary
    run = evaluate.exactrun(
        encoder.encode(evaluate.texts, category="data"), encoder.encode(list(evaluate.queries.values()), category="query"), chunk=2
    )
    expected = brute(encoder, evaluate.queries, evaluate.texts)

    for uid, rows in run.items():
        ranking = sorted(expected[uid], key=lambda x: -expected[uid][x])
        assert list(rows) == ranking
        assert [rows[x] for x in rows] == pytest.approx([expected[uid][x] for x in ranking], abs=1e-5)


def test_evaluate_command(results, pylate_model, folder):
    results, plot = results
    pytrec_eval = pytest.importorskip("pytrec_eval")

    # Dataset: the unjudged query is skipped
    assert results["dataset"]["documents"] == len(TEXTS) and results["dataset"]["queries"] == 4
    assert results["settings"]["fde"]["dimensions"] == 10240

    # Exact mode metrics equal a direct pytrec_eval call on a brute-force ranking
    run = brute(LateEncoder(str(pylate_model), gpu=False), {uid: QUERIES[uid] for uid in QRELS}, beir(folder)[1])
    scores = pytrec_eval.RelevanceEvaluator(QRELS, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    exact = results["modes"]["exact"]
    assert exact["ndcg@10"] == pytest.approx(np.mean([x["ndcg_cut_10"] for x in scores.values()]), abs=1e-6)
    assert exact["recall@100"] == pytest.approx(np.mean([x["recall_100"] for x in scores.values()]), abs=1e-6)

    # 100 candidates cover this corpus: re-ranking equals exact MaxSim
    for key in ("ndcg@10", "recall@100", "mrr@10"):
        assert results["modes"]["rerank"][key] == pytest.approx(exact[key], abs=1e-6)

    # Every figure: metrics, latency, index throughput, storage, sweep
    for mode in ("exact", "rerank", "muvera"):
        assert {"ndcg@10", "recall@100", "mrr@10"} <= set(results["modes"][mode])
    for mode in ("rerank", "muvera"):
        assert results["modes"][mode]["p50_ms"] > 0 and results["modes"][mode]["p95_ms"] >= results["modes"][mode]["p50_ms"]
        assert len(results["latency"][mode]) == 4

    index = results["index"]
    assert index["seconds"] > 0 and index["documents_per_second"] > 0
    # float16 candidate rows by default
    assert index["bytes_per_document"]["fde"] >= 10240 * 2 and index["bytes_per_document"]["tokens"] > 0
    assert index["consistency"]["identical_top10"] == 1.0
    assert [row["candidates"] for row in results["sweep"]] == [5, 100]
    assert plot.stat().st_size > 0

    # txtai's own pipeline as extra rows, and the ratios
    txtai = results["txtai"]
    assert set(txtai["modes"]) == {"exact", "rerank", "muvera"} and txtai["dimensions"] == 10240
    assert txtai["modes"]["rerank"]["latency_queries"] == 2 and txtai["modes"]["rerank"]["identical_top10"] == 1.0
    assert txtai["index"]["documents_per_second"] > 0
    assert {"documents_per_second", "rerank_speedup_p50", "muvera_speedup_p50"} <= set(results["ratios"])


def test_evaluate_options(pylate_model, folder, tmp_path, capsys):
    # muvera block as JSON, flags override its keys, FDE parameters reach the index
    output = tmp_path / "results.json"
    arguments = ["evaluate", str(pylate_model), str(folder), "--muvera", '{"candidates": 0, "repetitions": 2, "hashes": 4}', "--hashes", "3"]
    assert main(arguments + ["--queries", "2", "--json", str(output), "--no-progress"]) == 0

    results = json.loads(output.read_text(encoding="utf-8"))
    assert results["dataset"]["queries"] == 2
    assert results["settings"]["fde"]["dimensions"] == 2 * 8 * 16
    assert set(results["modes"]) == {"exact", "muvera"}
    assert "| txtai-muvera | MUVERA only |" in capsys.readouterr().out

    with pytest.raises(ValueError, match="unknown muvera setting"):
        Evaluate(pylate_model, folder, muvera={"repetition": 2})


def test_evaluate_learned_encoding(pylate_model, folder, tmp_path, capsys):
    # muvera: {encoding: lemur} trains on the evaluated index, built from texts (it learns from spans of them encoded as
    # queries), beside txtai's LemurTrainer on the same token vectors and learn queries
    output = tmp_path / "results.json"
    block = json.dumps({"encoding": "lemur", "dimensions": 32, "epochs": 3, "minimum": 4})
    arguments = ["--compare", "lemur", "--compare-epochs", "2", "--compare-learn", "500"]
    assert main(["evaluate", str(pylate_model), str(folder), "--muvera", block, *arguments, "--json", str(output), "--no-progress"]) == 0
    table = capsys.readouterr().out

    results = json.loads(output.read_text(encoding="utf-8"))
    assert results["settings"]["fde"]["dimensions"] == 32
    assert set(results["modes"]) == {"exact", "rerank", "muvera"}
    assert results["modes"]["rerank"]["exact@10"] == 1.0
    assert results["index"]["consistency"]["identical_top10"] == 1.0
    assert results["learned"]["learncategory"] == "query"

    # txtai's row: its candidates re-ranked with exact MaxSim, training CPU time extrapolated to its recommended settings
    (row,) = results["lemur"]
    assert row["dimensions"] == 2048 and row["epochs"] == 2 and row["learnsubsetsize"] == 500
    assert 0 <= row["exact@10"] <= 1 and 0 <= row["rerank"]["ndcg@10"] <= 1 and 0 <= row["candidates"]["ndcg@10"] <= 1
    assert row["training_cpu_s_recommended"] > row["training_cpu_s"] > 0
    assert "txtai LemurTrainer + Lemur, epochs=2, learnsubsetsize=500" in table and "| txtai-muvera (lemur) | 32 |" in table
    assert "Encoding: lemur, 32 dimensions; token store float16." in table

    # txtai's rows need a learned encoding
    assert main(["evaluate", str(pylate_model), str(folder), "--compare", "lemur", "--no-progress"]) == 2
    assert "compare lemur needs a learned encoding" in capsys.readouterr().err
