"""
Tune tests: grid recall figures, the Pareto frontier and the recommended muvera: block in a real txtai index.
"""

import contextlib
import io
import json
import re

import numpy as np
import pytest
import torch
import yaml

from txtai import Embeddings

from txtai_muvera.cli import main
from txtai_muvera.core.fde import FDE
from txtai_muvera.settings import resolve
from txtai_muvera.core.ragged import pack
from txtai_muvera.cli.grid import frontier
from txtai_muvera.cli.ranking import exactranking
from txtai_muvera.cli.report import tuningtable as table
from txtai_muvera.cli.sampling import tuningset as dataset
from txtai_muvera.cli.tune import CUTOFF, Tune

from helpers import late
from models import WORDS

# Small grid and depths covering every kind of value: identity projection, Count-Sketch final projection, fill off
GRID = [
    {"repetitions": 2, "hashes": 2, "projection": 4, "final": None, "fill": True},
    {"repetitions": 8, "hashes": 2, "projection": 4, "final": None, "fill": True},
    {"repetitions": 8, "hashes": 2, "projection": 4, "final": None, "fill": False},
    {"repetitions": 4, "hashes": 3, "projection": 0, "final": None, "fill": True},
    {"repetitions": 8, "hashes": 3, "projection": 0, "final": 32, "fill": False},
]
DEPTHS = (10, 25, 50, 100, 400)

# Target the tiny random model reaches only past the smallest depths, so the pick is not trivial
TARGET = 0.5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """
    Generated corpus of 300 documents on 12 topics (each topic its own words), as a jsonl file of strings.
    """

    rng = np.random.default_rng(0)
    topics = np.array_split(rng.permutation(WORDS), 12)

    documents = []
    for x in range(300):
        sentences = [" ".join(rng.choice(topics[x % 12], rng.integers(8, 25))) for _ in range(rng.integers(1, 4))]
        documents.append(". ".join(sentences) + ".")

    path = tmp_path_factory.mktemp("tune") / "corpus.jsonl"
    path.write_text("".join(json.dumps(document) + "\n" for document in documents), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tuned(pylate_model, corpus):
    """
    Tuning run with synthetic queries, verified through a txtai index: (tune, document matrices, query matrices, results).
    """

    tune = Tune(pylate_model, corpus, grid=GRID, depths=DEPTHS, target=TARGET, dtype="float32", gpu=False, progress=False)
    matrices, qmatrices = tune.encode()
    return tune, matrices, qmatrices, tune.run(matrices, qmatrices, verify=True)


def bruteforce(matrices, qmatrices):
    """
    Exact MaxSim top 10 of every query, one query and document at a time in float64.
    """

    tops = []
    for query in qmatrices:
        scores = np.array([(query.astype(np.float64) @ document.astype(np.float64).T).max(axis=1).mean() for document in matrices])
        tops.append(np.argsort(-scores, kind="stable")[:CUTOFF])

    return tops


def test_synthetic_queries_left_out(tuned, corpus):
    tune, matrices, qmatrices, results = tuned

    # A tenth of the documents became queries and left the searched corpus
    documents = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    assert len(tune.queries) == 30 and len(tune.texts) == 270 and results["queries"]["kind"] == "synthetic"
    assert len(matrices) == 270 and len(qmatrices) == 30

    # Every query is a span of one left-out document, of MINWORDS-MAXWORDS words
    left = [text for text in documents if text not in tune.texts]
    assert len(left) == 30
    for query in tune.queries:
        assert 6 <= len(query.split()) <= 20
        assert sum(query in text for text in left) >= 1
        assert not any(query in text for text in tune.texts)


def test_dataset_files(tmp_path):
    # Text corpus, one document per line, and a jsonl query file of objects
    (tmp_path / "corpus.txt").write_text("".join(f"document {x} about frogs and rates\n" for x in range(50)), encoding="utf-8")
    (tmp_path / "queries.jsonl").write_text('{"query": "frogs"}\n{"text": "rates"}\n"banks"\n', encoding="utf-8")
    rng = np.random.default_rng(0)

    ids, texts, queries, kind = dataset(tmp_path / "corpus.txt", None, tmp_path / "queries.jsonl", 2, None, rng)
    assert (len(ids), texts[3], queries, kind) == (50, "document 3 about frogs and rates", ["frogs", "rates"], f"file:{tmp_path / 'queries.jsonl'}")

    # jsonl objects with ids and titles; a sample of 20 takes its synthetic queries from the 30 documents left out
    rows = [{"_id": f"d{x}", "title": f"title {x}", "text": f"one two three four five six seven {x}."} for x in range(50)]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    ids, texts, queries, kind = dataset(tmp_path / "corpus.jsonl", None, None, 5, 20, rng)
    assert len(ids) == 20 and len(queries) == 5 and kind == "synthetic"
    assert texts[0] == f"title {ids[0][1:]} one two three four five six seven {ids[0][1:]}."
    numbers = [int(number) for query in queries for number in re.findall(r"\d+", query)]
    assert numbers and not set(numbers) & {int(uid[1:]) for uid in ids}

    # Synthetic queries need documents long enough to cut spans from
    with pytest.raises(ValueError, match="synthetic queries"):
        dataset(tmp_path / "corpus.txt", None, None, 60, None, rng)


def test_recall_matches_bruteforce(tuned):
    tune, matrices, qmatrices, results = tuned
    tops = bruteforce(matrices, qmatrices)

    # One configuration: FDE of each document and query on its own, ranked by a stable sort of float64 inner products
    row = next(row for row in results["grid"] if row["params"]["final"])
    encoding = FDE(16, **row["params"])
    documents = np.concatenate([encoding.batch([matrix], "data") for matrix in matrices]).astype(np.float64)
    queries = np.concatenate([encoding.batch([matrix], "query") for matrix in qmatrices]).astype(np.float64)

    for depth in results["depths"]:
        found = 0
        for query, top in zip(queries, tops):
            candidates = np.argsort(-(documents @ query), kind="stable")[:depth]
            found += len(set(top.tolist()) & set(candidates.tolist()))

        assert row["recall"][depth] == pytest.approx(found / (len(tops) * CUTOFF), abs=1e-12)

    # Depths past the corpus size are clipped to it, where every exact top document is found
    assert results["depths"][-1] == 270 and row["recall"][270] == 1.0


def test_frontier_non_dominated(tuned):
    _, _, _, results = tuned

    points = [{**row, "depth": depth, "recall": value} for row in results["grid"] for depth, value in row["recall"].items()]
    pareto = results["frontier"]
    assert pareto and len(pareto) < len(points)

    def dominates(a, b):
        return (
            a["bytes"] <= b["bytes"]
            and a["depth"] <= b["depth"]
            and a["recall"] >= b["recall"]
            and (a["bytes"], a["depth"], a["recall"]) != (b["bytes"], b["depth"], b["recall"])
        )

    # No point dominates a frontier point, every other point is dominated by a frontier point
    for point in pareto:
        assert not any(dominates(other, point) for other in points)
    keys = [(point["bytes"], point["depth"], point["recall"]) for point in pareto]
    for point in points:
        if (point["bytes"], point["depth"], point["recall"]) not in keys:
            assert any(dominates(other, point) for other in pareto)

    # Frontier of a hand-made set
    handmade = [{"bytes": 1, "depth": 50, "recall": 0.9}, {"bytes": 2, "depth": 50, "recall": 0.8}, {"bytes": 2, "depth": 10, "recall": 0.5}]
    assert frontier(handmade) == [handmade[2], handmade[0]]


def test_recommendation_cheapest(tuned):
    _, _, _, results = tuned
    best = results["recommended"]

    # Reaches the target, needs more than the smallest depth, and nothing reaching the target costs less work
    assert best["recall"] >= TARGET and best["depth"] > 10
    points = [point for point in results["frontier"] if point["recall"] >= TARGET]
    assert {key: value for key, value in best.items() if key not in ("block", "yaml")} in results["frontier"]
    assert best["work"] == min(point["work"] for point in points)

    # Block and YAML say the same
    params = best["params"]
    block = {"candidates": best["depth"], "repetitions": params["repetitions"], "hashes": params["hashes"], "projection": params["projection"]}
    block.update({"final": params["final"]} if params["final"] else {})
    block["fill"] = params["fill"]
    assert best["block"] == {**block, "dtype": "float32"}
    assert yaml.safe_load(best["yaml"]) == {"muvera": best["block"]}
    assert "Recommended" in table(results) and best["yaml"] in table(results)


def test_bytes_count_stored_candidate_dtype(tuned, pylate_model, corpus):
    tune, matrices, qmatrices, results = tuned
    best = results["recommended"]

    # An index built with the recommended block stores candidate vectors of the item size the bytes column counts
    embeddings = Embeddings(late(pylate_model, **best["block"]))
    embeddings.index([(uid, matrix, None) for uid, matrix in zip(tune.ids[:20], matrices[:20])])
    stored = embeddings.ann.fdes
    assert stored.dtype == np.float16 and best["bytes"] == stored.shape[1] * stored.dtype.itemsize
    assert all(row["bytes"] == row["dimensions"] * 2 for row in results["grid"])
    embeddings.close()

    # Candidate vectors kept in float32: 4 bytes per dimension, written to the block
    other = Tune(pylate_model, corpus, grid=GRID[:1], depths=DEPTHS, target=0.01, gpu=False, progress=False, encodingdtype="float32")
    rerun = other.run(matrices, qmatrices)
    assert rerun["grid"][0]["bytes"] == rerun["grid"][0]["dimensions"] * 4
    assert rerun["recommended"]["block"]["encodingdtype"] == "float32"


def test_recommended_block_in_index(tuned, pylate_model):
    tune, matrices, qmatrices, results = tuned
    best = results["recommended"]

    # The block parses as index settings and FDE parameters
    settings, params = resolve(best["block"])
    assert settings["candidates"] == best["depth"] and settings["dtype"] == "float32"
    assert params == {key: best["block"][key] for key in ("repetitions", "hashes", "projection", "final", "fill") if key in best["block"]}

    # Index built from texts with the block, queries searched as texts
    embeddings = Embeddings(late(pylate_model, **best["block"]))
    embeddings.index([(uid, text, None) for uid, text in zip(tune.ids, tune.texts)])
    results10 = embeddings.batchsearch(tune.queries, CUTOFF)
    assert all(len(rows) == CUTOFF for rows in results10)

    # Recall@10 against tune's float32 exact MaxSim top 10 is the claimed one, within one document
    def measured(tops):
        found = sum(len({row["id"] for row in rows} & {tune.ids[x] for x in top}) for rows, top in zip(results10, tops))
        return found / (len(tops) * CUTOFF)

    documents, doffsets = pack(matrices)
    queries, qoffsets = pack(qmatrices)
    recall = measured(
        [[x for x, _ in rows] for rows in exactranking(torch.from_numpy(queries), qoffsets, torch.from_numpy(documents), doffsets, CUTOFF)]
    )
    assert recall >= TARGET
    assert recall == pytest.approx(best["recall"], abs=1 / (len(qmatrices) * CUTOFF))

    # Against a float64 brute force: same-topic documents nearly tie, so float32 and float64 may order the 10th place apart
    tops = bruteforce(matrices, qmatrices)
    assert measured(tops) == pytest.approx(recall, abs=0.02)

    # Tune's own verification agrees
    assert results["verify"]["recall"] == pytest.approx(recall, abs=1 / (len(tops) * CUTOFF))
    assert results["verify"]["block"] == best["block"]


def test_cli(pylate_model, corpus, tmp_path):
    # BEIR folder: corpus, queries and test qrels
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    documents = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for x, text in enumerate(documents):
            f.write(json.dumps({"_id": f"d{x}", "title": "", "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as f:
        for x, text in enumerate(["frog species", "interest rates", "insulin obesity", "ice shelf", "unjudged"]):
            f.write(json.dumps({"_id": f"q{x}", "text": text}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{x}\td{x}\t1\n" for x in range(4)), encoding="utf-8")

    # Judged test queries against the whole corpus, a one-configuration grid
    output, path = io.StringIO(), tmp_path / "tune.json"
    arguments = ["tune", str(pylate_model), str(folder), "--split", "test", "--repetitions", "4", "--hashes", "2", "--projection", "4"]
    arguments += ["--final", "none", "--fill", "true", "--no-baseline", "--depths", "10,100,300", "--target", "0.9", "--verify"]
    arguments += ["--json", str(path), "--cpu", "--no-progress", "--learned", json.dumps([{"encoding": "lemur", "dimensions": 32, "epochs": 3}])]
    with contextlib.redirect_stdout(output):
        assert main(arguments) == 0

    results = json.loads(path.read_text(encoding="utf-8"))
    assert results["queries"] == {"kind": "beir:test", "count": 4, "tokens_per_query": pytest.approx(results["queries"]["tokens_per_query"])}
    assert results["corpus"]["documents"] == 300 and len(results["grid"]) == 2

    # The learned encoding is trained on the corpus, in the grid with its training time and bytes (float16 candidate vectors)
    learned = results["grid"][1]
    assert learned["params"] == {"encoding": "lemur", "dimensions": 32, "epochs": 3} and learned["training"] > 0 and learned["bytes"] == 64
    assert learned["learncategory"] == "query"
    assert "lemur (dimensions 32, epochs 3) = 32" in output.getvalue()
    assert results["recommended"]["recall"] >= 0.9 and results["verify"]["recall"] >= 0.9

    # The printed block pastes into YAML as is
    printed = output.getvalue()
    text = printed[printed.index("muvera:") :].split("\n\n")[0]
    assert yaml.safe_load(text) == {"muvera": results["recommended"]["block"]}

    # An unreachable target on a sample of 60 documents exits with 1 and says so
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        arguments = ["tune", str(pylate_model), str(folder), "--split", "test", "--sample", "60", "--repetitions", "2", "--hashes", "2"]
        arguments += ["--projection", "4", "--fill", "false", "--no-baseline", "--depths", "10", "--target", "1.0", "--json", str(path)]
        arguments += ["--cpu", "--no-progress", "--learned", ""]
        assert main(arguments) == 1
    assert "No configuration reaches" in output.getvalue()
    results = json.loads(path.read_text(encoding="utf-8"))
    assert results["corpus"]["documents"] == 60 and results["grid"][0]["params"]["fill"] is False
