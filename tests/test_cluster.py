"""
Sharded serving test: txtai's API cluster over two txtai API servers, each holding about half the documents in a
txtai-muvera index, returns the same top 10 (ids and MaxSim scores) as one index holding everything. MaxSim scores are
exact and not normalised per index, so the cluster's merge by score is meaningful across shards.
"""

import os
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from txtai import Embeddings
from txtai.api import API

from helpers import TEXTS, freeport, late

# Queries compared between the cluster and the single index
QUERIES = ["virus cases", "ice shelf collapse", "lottery ticket winner", "protein folding", "interest rates", "frog species"]


def start(config, path):
    """
    Starts a txtai API server on a free localhost port with a YAML config written to path.

    Returns:
        (process, url)
    """

    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)

    # Server output goes to a file: a full pipe would block the server
    port = freeport()
    with open(f"{path}.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "txtai.api:app", "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, "CONFIG": str(path)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    process.log = f"{path}.log"
    return process, f"http://127.0.0.1:{port}"


def wait(process, url):
    """
    Waits (bounded) until a server answers.
    """

    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            with open(process.log, encoding="utf-8", errors="replace") as log:
                pytest.fail(f"server {url} exited: {log.read()[-3000:]}")
        try:
            if httpx.get(f"{url}/count", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)

    pytest.fail(f"server {url} did not start in time")


@pytest.mark.slow
def test_cluster_matches_single_index(pylate_model, tmp_path):
    documents = [{"id": f"d{x}-{k}", "text": f"{text}, report {k}"} for k in range(5) for x, text in enumerate(TEXTS)]
    config = late(pylate_model)

    # Two writable shard servers, started together
    servers = [start({"embeddings": config, "writable": True}, tmp_path / f"shard{x}.yml") for x in range(2)]
    try:
        for process, url in servers:
            wait(process, url)

        # txtai's cluster: splits documents between the shards by id, merges search results by score
        cluster = API({"cluster": {"shards": [url for _, url in servers]}})
        cluster.add(documents)
        cluster.index()

        counts = [httpx.get(f"{url}/count", timeout=30).json() for _, url in servers]
        assert all(counts) and sum(counts) == len(documents) == cluster.count()

        # One index holding everything
        single = Embeddings(config)
        single.index(documents)

        shards = set()
        for query in QUERIES:
            expected = single.search(query, 10)
            results = cluster.search(query, 10)
            assert [r["id"] for r in results] == [r["id"] for r in expected], query
            assert [r["score"] for r in results] == pytest.approx([r["score"] for r in expected], abs=1e-5)
            assert [r["text"] for r in results] == [r["text"] for r in expected]

            # Which shards the merged top 10 came from
            for x, (_, url) in enumerate(servers):
                ids = {r["id"] for r in httpx.get(f"{url}/search", params={"query": query, "limit": 10}, timeout=30).json()}
                if ids & {r["id"] for r in results}:
                    shards.add(x)

        # The merged results interleave both shards
        assert shards == {0, 1}

        # Batch search merges the same way
        batch = cluster.batchsearch(QUERIES[:2], 10)
        assert [[r["id"] for r in x] for x in batch] == [[r["id"] for r in single.search(q, 10)] for q in QUERIES[:2]]
    finally:
        for process, _ in servers:
            process.terminate()
        for process, _ in servers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
