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

from helpers import TEXTS, exactmaxsim, freeport

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_application_as_shipped(pylate_model, monkeypatch):
    # examples/app.yml as shipped, offline: the model comes from TXTAI_MUVERA_LOCAL_MODEL
    monkeypatch.setenv("TXTAI_MUVERA_LOCAL_MODEL", str(pylate_model))
    app = Application(str(EXAMPLES / "app.yml"))
    app.add([{"id": str(x), "text": text} for x, text in enumerate(TEXTS)])
    app.index()

    # Search: MaxSim scores
    encoder = app.pipelines["txtai_muvera.Similarity"].encoder
    results = app.search(TEXTS[0], 3)
    assert results[0]["text"] == TEXTS[0]
    for result in results:
        assert result["score"] == pytest.approx(exactmaxsim(encoder, TEXTS[0], result["text"]), abs=2e-3)

    # Workflow: search then re-rank
    reranked = list(app.workflow("searchrerank", [TEXTS[0], TEXTS[10]]))
    assert len(reranked) == 2 and len(reranked[0]) == 5
    assert reranked[0][0]["text"] == TEXTS[0] and reranked[1][0]["text"] == TEXTS[10]


def test_rag(pylate_model, monkeypatch):
    # examples/rag.yml with only the generator replaced: a tiny generator created here (helpers.Echo) answers with the
    # prompt it receives, so the test sees the RAG context
    monkeypatch.setenv("TXTAI_MUVERA_LOCAL_MODEL", str(pylate_model))
    with open(EXAMPLES / "rag.yml", encoding="utf-8") as f:
        data = yaml.safe_load(f)
    data["rag"]["path"] = "helpers.Echo"
    data["helpers.Echo"] = {}

    app = Application(data)
    app.add([{"id": str(x), "text": text} for x, text in enumerate(TEXTS)])
    app.index()

    # RAG: the generator receives the MaxSim top 3 as context
    answer = app.pipelines["rag"]("virus cases")
    top = [r["text"] for r in app.search("virus cases", 3)]
    prompt = answer["answer"]
    assert all(text in prompt for text in top)
    assert prompt.index(top[0]) < prompt.index(top[1]) < prompt.index(top[2])


@pytest.mark.slow
def test_api_search_and_workflow(pylate_model):
    # examples/app.yml as shipped, served by txtai's API with the local model from the environment
    port = freeport()
    env = {**os.environ, "CONFIG": str(EXAMPLES / "app.yml"), "TXTAI_MUVERA_LOCAL_MODEL": str(pylate_model)}
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
