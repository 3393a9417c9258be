"""
A newcomer's first hour: every failure says what is wrong in one line, fast. One group of tests per friction of issue 12:
the model hub, configuration errors, the demo, the example application, evaluate, and the smaller things.
"""

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from txtai import Embeddings
from txtai.app import Application

from txtai_muvera import progress
from txtai_muvera.core import hub
from txtai_muvera.core.encoder import LateEncoder
from txtai_muvera.errors import ConfigurationError
from txtai_muvera.cli.sampling import subsample

from helpers import TEXTS, freeport, late

ROOT = Path(__file__).resolve().parents[1]


def closedport():
    """
    A local port nothing listens on: connections are refused at once, like an unreachable hub.
    """

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(code, env=None, timeout=120):
    """
    Runs Python code in a fresh interpreter with extra environment variables.

    Returns:
        CompletedProcess
    """

    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT / "tests")
    )


def lastline(error):
    """
    The last line of the traceback Python prints for an exception.
    """

    return traceback.format_exception(error)[-1].strip()


# 1. The model hub


def test_hub_offline_switch(monkeypatch):
    # huggingface_hub's own switch decides without a probe
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.reachable() == (False, "HF_HUB_OFFLINE is set")


def test_hub_unreachable_is_one_line_and_fast(tmp_path, pylate_model):
    # An unreachable hub: one probe, no retries, one line naming the model and the way out; a cached model still loads
    cache = tmp_path / "cache"
    snapshot = cache / "models--someone--tiny-colbert" / "snapshots" / ("a" * 40)
    snapshot.parent.mkdir(parents=True)
    os.symlink(pylate_model, snapshot)
    (cache / "models--someone--tiny-colbert" / "refs").mkdir()
    (cache / "models--someone--tiny-colbert" / "refs" / "main").write_text("a" * 40)

    code = """
import time, traceback
from txtai import Embeddings
from txtai_muvera.errors import ConfigurationError
start = time.perf_counter()
try:
    Embeddings(path="nobody/no-such-colbert-model", method="txtai_muvera.LateVectors", backend="txtai_muvera.Muvera")
except ConfigurationError as error:
    print("LAST", traceback.format_exception(error)[-1].strip())
print("SECONDS", time.perf_counter() - start)
embeddings = Embeddings(path="someone/tiny-colbert", method="txtai_muvera.LateVectors", backend="txtai_muvera.Muvera", content=True)
embeddings.index(["virus cases", "lottery ticket"])
print("CACHED", embeddings.search("lottery", 1)[0]["text"])
"""
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{closedport()}", "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "0"}
    result = run(code, env)
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert result.returncode == 0, result.stderr[-3000:]

    assert lines["LAST"].startswith("txtai_muvera.errors.ConfigurationError: model hub unreachable")
    assert "'nobody/no-such-colbert-model' is not in the local cache" in lines["LAST"] and "local model folder" in lines["LAST"]
    assert "no modules.json" not in result.stdout + result.stderr and "Retry" not in result.stderr
    assert float(lines["SECONDS"]) < 3
    assert lines["CACHED"] == "lottery ticket"


class NotFound(BaseHTTPRequestHandler):
    """
    A model hub that knows no repository: its root answers, every other path is a 404 with the hub's RepoNotFound code.
    """

    def answer(self):
        if self.path == "/":
            self.send_response(200)
        else:
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("X-Error-Message", "Repository not found")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = answer

    def log_message(self, *args):
        pass


def test_hub_reachable_unknown_id_not_found():
    # The real hub code path against a local server speaking the hub's protocol: a mistyped id is "not found on the hub"
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code = """
from txtai_muvera.core.encoder import LateEncoder
try:
    LateEncoder("nobody/no-such-colbert-model", gpu=False)
except ValueError as error:
    print(type(error).__name__, error)
"""
        result = run(code, {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}", "HF_HUB_OFFLINE": "0"})
    finally:
        server.shutdown()

    assert result.stdout.startswith("HubError 'nobody/no-such-colbert-model' not found on the model hub"), result.stdout + result.stderr[-3000:]
    assert "Retry" not in result.stderr


def test_hub_probe():
    # One request, a short timeout: a server that never answers, one that is no hub (404 at its root), the hub's root
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        start = time.perf_counter()
        ok, reason = hub.probe(f"http://127.0.0.1:{silent.getsockname()[1]}", 0.5)
        assert not ok and "did not answer within 0.5s" in reason and time.perf_counter() - start < 2

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert hub.probe(url, 2) == (True, None)
        assert hub.probe(f"{url}/elsewhere", 2) == (False, f"{url}/elsewhere answered HTTP 404, not a model hub")
    finally:
        server.shutdown()


def test_hub_expand(monkeypatch):
    # ${NAME:-default} in model paths, so one YAML file serves the hub and a local folder
    monkeypatch.delenv("TXTAI_MUVERA_LOCAL_MODEL", raising=False)
    assert hub.expand("${TXTAI_MUVERA_LOCAL_MODEL:-neuml/colbert-muvera-micro}") == "neuml/colbert-muvera-micro"
    monkeypatch.setenv("TXTAI_MUVERA_LOCAL_MODEL", "/models/colbert")
    assert hub.expand("${TXTAI_MUVERA_LOCAL_MODEL:-neuml/colbert-muvera-micro}") == "/models/colbert"
    with pytest.raises(ValueError, match="TXTAI_MUVERA_UNSET_FOR_TEST, which is not set"):
        hub.expand("${TXTAI_MUVERA_UNSET_FOR_TEST}")


# 2. Configuration errors


@pytest.mark.parametrize(
    "config, message",
    [
        ({"muvera": {"candidtes": 5}}, "unknown muvera setting 'candidtes' (did you mean 'candidates'?)"),
        ({"muvera": {"dtype": "float8"}}, "muvera dtype must be one of ('float32', 'float16', 'int8'), got 'float8'"),
        ({"muvera": {"candidates": -1}}, "muvera candidates must be an integer >= 0, got -1"),
        ({"muvera": {"reduce": "max"}}, "muvera reduce must be 'mean' or 'sum'"),
        ({"muvera": {"progress": "yes"}}, "muvera progress must be true, false or null"),
        ({"muvera": {"repetitions": 0}}, "repetitions must be an integer >= 1"),
        ({"muvera": {"search": "faiss2"}}, "unknown muvera search backend 'faiss2' (did you mean 'faiss'?), valid: 'exact', a preset ['faiss-hnsw'"),
        ({"muvera": {"search": {"backend": "no.such.Backend"}}}, "muvera search backend 'no.such.Backend' is not a txtai ANN class"),
        ({"muvera": {"encoder": "colbret"}}, "no encoder named 'colbret' is registered, registered encoders: ['colbert']"),
        ({"muvrea": {"candidates": 5}}, "unknown setting 'muvrea' (did you mean 'muvera'?)"),
        ({"quantize": True}, "quantize is not supported by txtai_muvera.LateVectors"),
    ],
)
def test_configuration_error_is_the_last_line(pylate_model, config, message):
    # Raised when the index is created, past txtai's ImportError wrapper: the user's last traceback line is ours
    with pytest.raises(ConfigurationError) as error:
        Embeddings({**late(pylate_model), **config})

    assert message in str(error.value)
    assert lastline(error.value).startswith("txtai_muvera.errors.ConfigurationError: ") and message in lastline(error.value)
    assert "Unable to resolve" not in "".join(traceback.format_exception(error.value))


def test_model_path_errors_are_the_last_line(tmp_path):
    # A missing path and a folder that is not a model
    for path, message in [(tmp_path / "missing", "is neither a local folder nor a model hub id"), (tmp_path, "no modules.json (PyLate)")]:
        with pytest.raises(ConfigurationError) as error:
            Embeddings(path=str(path), method="txtai_muvera.LateVectors", backend="txtai_muvera.Muvera")
        assert message in lastline(error.value)


def test_configuration_error_printed_by_python(pylate_model):
    # What a script's user sees: a short traceback whose last line is the message
    code = f"""
from txtai import Embeddings
Embeddings(path={str(pylate_model)!r}, method="txtai_muvera.LateVectors", backend="txtai_muvera.Muvera", muvera={{"search": "faiss2"}})
"""
    result = run(code)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert lines[-1].startswith("txtai_muvera.errors.ConfigurationError: unknown muvera search backend 'faiss2'")
    assert "ImportError" not in result.stderr and len(lines) < 25


def test_internal_keys_not_listed(pylate_model):
    with pytest.raises(ConfigurationError) as error:
        Embeddings(late(pylate_model, candidtes=5))
    assert "'fingerprint'" not in str(error.value) and "'candidates'" in str(error.value)


def test_search_backends_accepted(pylate_model):
    # Valid choices still build: a named backend, a dict, a dotted class path
    for search in ("exact", "numpy", {"backend": "numpy"}, "txtai.ann.NumPy"):
        embeddings = Embeddings(late(pylate_model, search=search))
        embeddings.index(TEXTS[:4])
        assert str(embeddings.search(TEXTS[1], 1)[0]["id"]) == "1"


def test_missing_backend_warns(pylate_model, caplog):
    # LateVectors without the Muvera backend: searches would be FDE scores only
    with caplog.at_level(logging.WARNING):
        Embeddings(path=str(pylate_model), method="txtai_muvera.LateVectors")
    assert "add backend: txtai_muvera.Muvera" in caplog.text


def test_late_model_without_method_warns(pylate_model, caplog):
    # txtai would build its own late-interaction index: with txtai_muvera.sparse imported, a warning names the fix
    # pylint: disable=C0415,W0611
    import txtai_muvera.sparse  # noqa: F401

    with caplog.at_level(logging.WARNING):
        Embeddings(path=str(pylate_model))
    assert "for txtai-muvera set method: txtai_muvera.LateVectors and backend: txtai_muvera.Muvera" in caplog.text


# 3. The demo


def test_demo_without_hub_or_model_is_one_line(tmp_path):
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{closedport()}", "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "0"}
    env.pop("TXTAI_MUVERA_LOCAL_MODEL", None)
    base = {k: v for k, v in os.environ.items() if k != "TXTAI_MUVERA_LOCAL_MODEL"}

    for arguments, expected in [
        ([], "--local FOLDER or TXTAI_MUVERA_LOCAL_MODEL=FOLDER"),
        (["--local", str(tmp_path / "missing")], "no such folder"),
    ]:
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "demo.py"), *arguments], env={**base, **env}, capture_output=True, text=True, timeout=60
        )
        assert time.perf_counter() - start < 5
        assert result.returncode == 1 and not result.stdout
        assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr


@pytest.mark.slow
def test_demo_with_local_model(pylate_model, tmp_path):
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{closedport()}",
        "HF_HUB_CACHE": str(tmp_path),
        "TXTAI_MUVERA_LOCAL_MODEL": str(pylate_model),
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--queries", "1"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"using local model {pylate_model}" in result.stdout and "Indexed 120 documents" in result.stdout


# 4. The example application


def test_app_without_model_is_one_line(monkeypatch, tmp_path):
    # examples/app.yml as shipped, no hub and no local model: the application stops with the hub message
    monkeypatch.delenv("TXTAI_MUVERA_LOCAL_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(tmp_path))
    # The pipelines load first: txtai does not wrap their errors, so the hub's own error is the last line
    with pytest.raises((ConfigurationError, hub.HubError)) as error:
        Application(str(ROOT / "examples" / "app.yml"))
    assert "model hub unreachable (HF_HUB_OFFLINE is set) and 'neuml/colbert-muvera-micro' is not in the local cache" in lastline(error.value)


# 5. evaluate


def test_subsample_keeps_judged():
    ids, texts = [f"d{x}" for x in range(100)], [f"text {x}" for x in range(100)]
    qrels = {"q1": {"d3": 1, "d97": 0}, "q2": {"d50": 2}}
    sample = subsample(ids, texts, qrels, 10, seed=1)
    assert len(sample["ids"]) == 10 and {"d3", "d97", "d50"} <= set(sample["ids"])
    assert sample["ids"] == sorted(sample["ids"], key=ids.index) and sample["texts"] == [f"text {x[1:]}" for x in sample["ids"]]
    assert sample["judged"] == 3 and subsample(ids, texts, qrels, 10, seed=1)["ids"] == sample["ids"]

    # Fewer documents than judged: every judged document stays
    assert set(subsample(ids, texts, qrels, 2)["ids"]) == {"d3", "d97", "d50"}


def test_evaluate_sample_and_shared_latency(pylate_model, tmp_path, capsys):
    # pylint: disable=C0415
    from txtai_muvera.cli.main import main, parser

    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{x}", "text": text}) + "\n" for x, text in enumerate(TEXTS)))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "virus cases"}) + "\n" + json.dumps({"_id": "q2", "text": "frog"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("q\tc\ts\nq1\td0\t1\nq2\td10\t1\n")

    output = tmp_path / "results.json"
    arguments = ["evaluate", str(pylate_model), str(folder), "--sample", "5", "--candidates", "3", "--sweep", "2,3", "--json", str(output)]
    assert main(arguments + ["--plot", str(tmp_path / "plot.png"), "--no-progress"]) == 0
    results = json.loads(output.read_text())

    # Sample: 5 documents with both judged ones
    assert results["dataset"]["documents"] == 5 and results["dataset"]["sample"]["judged"] == 2
    assert "sample of 5: every one of the 2 judged documents kept" in capsys.readouterr().out

    # One latency measurement per setting: the table's re-rank row and the sweep's row at the same count are one
    sweep = {row["candidates"]: row for row in results["sweep"]}
    assert sweep[3]["p50_ms"] == results["modes"]["rerank"]["p50_ms"] and sweep[3]["p95_ms"] == results["modes"]["rerank"]["p95_ms"]
    assert len(results["latency"]["rerank"]) == len(results["latency"]["muvera"]) == 2

    # The cost of --plot is in the help
    evaluate = [action for action in parser()._subparsers._group_actions[0].choices["evaluate"]._actions if action.dest == "plot"][0]
    assert "one more search per query for each --sweep count" in evaluate.help


def test_index_progress_counts_encoded_documents(pylate_model, monkeypatch, caplog):
    # No terminal: log lines every N documents, counted after encoding (not as the stream is read)
    monkeypatch.setattr(progress, "EVERY", 5)
    monkeypatch.setattr(progress, "interactive", lambda: False)

    encoded = []
    embeddings = Embeddings({**late(pylate_model, progress=None), "encodebatch": 4})
    original = embeddings.model.model.encode

    def encode(texts, *args, **kwargs):
        encoded.extend(texts)
        return original(texts, *args, **kwargs)

    embeddings.model.model.encode = encode

    def stream():
        for x, text in enumerate(TEXTS):
            # Lines logged so far never count more documents than were encoded
            for record in caplog.records:
                assert int(record.getMessage().split(": ")[1].split(" ")[0]) <= len(encoded)
            yield x, text, None

    with caplog.at_level(logging.INFO, logger="txtai_muvera"):
        embeddings.index(stream())

    lines = [r.getMessage() for r in caplog.records if r.name == "txtai_muvera"]
    assert lines and lines[0].startswith("Encoding: 8 docs in") and lines[-1].startswith(f"Encoding: {len(TEXTS)} docs in")


# 6. Smaller things


def test_limits(pylate_model):
    embeddings = Embeddings(late(pylate_model))
    embeddings.index(TEXTS)

    # txtai's contract: None and 0 mean its default, 3
    assert len(embeddings.search("virus", None)) == len(embeddings.search("virus", 0)) == 3

    # A negative limit names the reason it arrives as 0; a float is refused as given
    with pytest.raises(ValueError, match=r"got 0 \(with content enabled txtai passes a negative limit as 0\)"):
        embeddings.search("virus", -1)
    with pytest.raises(ValueError, match="search limit must be a positive integer, got 2.5"):
        embeddings.search("virus", 2.5)

    # Content disabled: txtai hands the limit over unchanged, so bool, float and negative limits are refused as given
    # (with content enabled txtai adds its offset to the limit, which turns True into 1)
    embeddings = Embeddings({**late(pylate_model), "content": False})
    embeddings.index(TEXTS)
    for limit in (True, 2.5, -1):
        with pytest.raises(ValueError, match=f"search limit must be a positive integer, got {limit!r}$"):
            embeddings.search("virus", limit)


def test_empty_document_never_outranks_real_ones(pylate_model):
    # Empty and blank documents are stored and counted, score 0, and txtai drops scores <= 0 from search results
    embeddings = Embeddings(late(pylate_model))
    embeddings.index([("empty", "", None), ("blank", "  \n", None)] + [(str(x), text, None) for x, text in enumerate(TEXTS)])
    assert embeddings.count() == len(TEXTS) + 2

    for query in ("lottery", "virus cases", ""):
        results = embeddings.search(query, len(TEXTS) + 2)
        assert {"empty", "blank"}.isdisjoint(r["id"] for r in results) and len(results) == len(TEXTS)
    assert embeddings.search("select id, text from txtai where id = 'empty'")[0]["text"] == ""
    assert dict(embeddings.similarity("lottery", ["", TEXTS[4]]))[0] == 0.0


def test_model_loading_is_quiet(pylate_model, capfd):
    capfd.readouterr()
    LateEncoder(str(pylate_model), gpu=False)
    output = capfd.readouterr()
    assert "Loading weights" not in output.err + output.out


def test_plugins_listing_is_fast_and_light():
    # Listing imports neither torch nor txtai: registrations are "module:qualname" paths until first use
    code = "import sys, time; s = time.perf_counter(); from txtai_muvera.cli import main; main(['plugins']); print(time.perf_counter() - s, 'torch' in sys.modules, 'txtai' in sys.modules)"
    result = run(code)
    seconds, torch, txtai = result.stdout.strip().splitlines()[-1].split()
    assert "colbert          txtai_muvera.core.encoder.LateEncoder" in result.stdout
    assert torch == txtai == "False" and float(seconds) < 2


def test_command_line_configuration_errors_are_one_line(pylate_model, tmp_path, capsys):
    # pylint: disable=C0415
    from txtai_muvera.cli import main

    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"_id": "d0", "text": TEXTS[0]}) + "\n")
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "virus"}) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text("q\tc\ts\nq1\td0\t1\n")

    for arguments, message in [
        (["evaluate", str(tmp_path / "missing"), str(tmp_path)], "is neither a local folder nor a model hub id"),
        (["evaluate", str(pylate_model), str(tmp_path), "--muvera", '{"candidtes": 3}'], "unknown muvera setting 'candidtes'"),
        (["evaluate", str(pylate_model), str(tmp_path / "nofolder")], "corpus.jsonl not found"),
        (["tune", str(tmp_path / "missing"), str(tmp_path), "--split", "test"], "tuning needs at least 2 documents"),
    ]:
        capsys.readouterr()
        assert main(arguments + ["--no-progress"]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"txtai-muvera {arguments[0]}: error: ") and message in error and len(error.splitlines()) == 1
