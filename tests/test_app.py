"""
Application tests: the example YAML with txtai.app.Application, a workflow, RAG and the txtai API over HTTP.
"""

import os
import subprocess
import sys
import time

from pathlib import Path

import httpx
import pytest
import yaml

from txtai.app import Application

from helpers import TEXTS, exact, freeport

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "app.yml"


def config(model, rag=True):
    """
    Loads the example YAML with the model replaced by a local folder.
    """

    with open(EXAMPLE, encoding="utf-8") as f:
        data = yaml.safe_load(f)

    data["embeddings"]["path"] = str(model)
    data["txtai_muvera.Similarity"]["path"] = str(model)
    data["txtai_muvera.Similarity"]["gpu"] = False
    if not rag:
        del data["rag"]

    return data


def test_application_search_workflow_rag(pylate_model):
    data = config(pylate_model)

    # A tiny generator created here (helpers.Echo): it answers with the prompt it receives, so the test sees the RAG context
    data["rag"]["path"] = "helpers.Echo"
    data["helpers.Echo"] = {}
    app = Application(data)
    app.add([{"id": str(x), "text": text} for x, text in enumerate(TEXTS)])
    app.index()

    # Search: MaxSim scores
    encoder = app.pipelines["txtai_muvera.Similarity"].encoder
    results = app.search(TEXTS[0], 3)
    assert results[0]["text"] == TEXTS[0]
    for result in results:
        assert result["score"] == pytest.approx(exact(encoder, TEXTS[0], result["text"]), abs=2e-3)

    # Workflow: search then re-rank
    reranked = list(app.workflow("searchrerank", [TEXTS[0], TEXTS[10]]))
    assert len(reranked) == 2 and len(reranked[0]) == 5
    assert reranked[0][0]["text"] == TEXTS[0] and reranked[1][0]["text"] == TEXTS[10]

    # RAG: the generator receives the MaxSim top 3 as context
    answer = app.pipelines["rag"]("virus cases")
    top = [r["text"] for r in app.search("virus cases", 3)]
    prompt = answer["answer"]
    assert all(text in prompt for text in top)
    assert prompt.index(top[0]) < prompt.index(top[1]) < prompt.index(top[2])


def test_api_search_and_workflow(pylate_model, tmp_path):
    path = tmp_path / "app.yml"
    data = config(pylate_model, rag=False)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f)

    port = freeport()
    env = {**os.environ, "CONFIG": str(path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "txtai.api:app", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=60) as client:
            # Wait for start-up (bounded)
            for _ in range(240):
                try:
                    if client.get("/count").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None, server.stdout.read().decode()[-3000:]
                time.sleep(0.5)

            documents = [{"id": str(x), "text": text} for x, text in enumerate(TEXTS)]
            assert client.post("/add", json=documents).status_code == 200
            assert client.get("/index").status_code == 200

            results = client.get("/search", params={"query": TEXTS[10], "limit": 3}).json()
            assert results[0]["text"] == TEXTS[10]

            reranked = client.post("/workflow", json={"name": "searchrerank", "elements": [TEXTS[4]]}).json()
            assert reranked[0][0]["text"] == TEXTS[4]
    finally:
        server.terminate()
        server.wait(timeout=30)
