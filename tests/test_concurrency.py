"""
Concurrency tests: searches from several threads while another thread appends and deletes. Every returned score must
equal an exact MaxSim of that query and document, and no document deleted before a search started may come back.
"""

import sys
import threading
import time

import numpy as np
import pytest

from txtai import Embeddings

from txtai_muvera import plugins
from txtai_muvera.ann import Muvera
from txtai_muvera.lock import ReadWriteLock
from txtai_muvera.array import LateArray
from txtai_muvera.core.ragged import pack

from helpers import late

# Token vector width of the tiny test models
DIMENSION = 16


def matrices(count, seed):
    """
    Random unit token matrices of 4 to 24 tokens.
    """

    generator = np.random.default_rng(seed)
    results = []
    for _ in range(count):
        matrix = generator.standard_normal((generator.integers(4, 25), DIMENSION)).astype(np.float32)
        results.append(matrix / np.linalg.norm(matrix, axis=1, keepdims=True))

    return results


def maxsim(query, document):
    """
    Exact MaxSim (mean over query tokens), in float64.
    """

    return float((query.astype(np.float64) @ document.astype(np.float64).T).max(axis=1).mean())


class Race:
    """
    Runs reader threads against one writer thread and collects every failure.
    """

    def __init__(self):
        self.failures, self.done = [], threading.Event()

    def run(self, readers, writer):
        def guard(function, *args):
            try:
                function(*args)
            except Exception as error:  # pylint: disable=W0703
                self.failures.append(f"{function.__name__}: {type(error).__name__}: {error}")
            finally:
                if function is writer:
                    self.done.set()

        threads = [threading.Thread(target=guard, args=(reader, x)) for x, reader in enumerate(readers)]
        threads.append(threading.Thread(target=guard, args=(writer,)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
            assert not thread.is_alive(), "a thread hangs"

        assert not self.failures, self.failures[:5]


@pytest.mark.parametrize("search", ["exact", "faiss", "hnsw"])
def test_ann_search_during_writes(search):
    # The Muvera ANN on its own: its readers-writer lock makes searches safe while it changes
    fde = plugins.lookup("encodings", "muvera")(dimension=DIMENSION, repetitions=4)
    documents, queries = matrices(600, 0), matrices(6, 1)

    def rows(batch):
        tokens, offsets = pack(batch)
        return LateArray(fde(tokens, offsets, "data"), tokens=tokens, offsets=offsets, encoding=fde.config())

    ann = Muvera({"muvera": {"dtype": "float32", "search": search, "repetitions": 4, "candidates": 50}})
    ann.index(rows(documents[:200]))
    encoded = []
    for query in queries:
        tokens, offsets = pack([query])
        encoded.append(LateArray(fde(tokens, offsets, "query"), tokens=tokens, offsets=offsets, encoding=fde.config()))

    # Row id -> time its delete returned
    deleted, race, checked = {}, Race(), [0]

    def reader(x):
        while not race.done.is_set() or checked[0] < 50:
            started = time.monotonic()
            query = x % len(queries)
            for uid, score in ann.search(encoded[query], 5)[0]:
                assert 0 <= uid < len(documents), f"unknown row {uid}"
                assert score == pytest.approx(maxsim(queries[query], documents[uid]), abs=1e-5), f"row {uid} score {score}"
                assert not (uid in deleted and deleted[uid] < started), f"row {uid} deleted before the search started"
            checked[0] += 1
            x += 1

    def writer():
        generator = np.random.default_rng(2)
        for start in range(200, 600, 20):
            ann.append(rows(documents[start : start + 20]))
            for uid in generator.choice(start, 8, replace=False).tolist():
                ann.delete([uid])
                deleted.setdefault(uid, time.monotonic())

    # Switch threads often so that a search interleaves with writes between its own steps
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        race.run([reader] * 3, writer)
    finally:
        sys.setswitchinterval(interval)

    assert ann.count() == len(documents) - len(deleted)


def test_embeddings_search_during_upserts(pylate_model):
    # A txtai Embeddings index (content disabled) used the documented way: searches share a readers-writer lock,
    # upserts and deletes take it exclusively (txtai's own ids list and database are not safe otherwise)
    documents, queries = matrices(400, 3), matrices(5, 4)
    config = {**late(pylate_model, dtype="float32", candidates=400), "content": False}
    embeddings = Embeddings(config)
    embeddings.index([(f"d{x}", documents[x], None) for x in range(150)])

    lock, race, checked = ReadWriteLock(), Race(), [0]
    current = {f"d{x}": x for x in range(150)}

    def reader(x):
        while not race.done.is_set() or checked[0] < 40:
            query = x % len(queries)
            with lock.read():
                results = embeddings.search(queries[query], 5)
                snapshot = dict(current)

            # Each result is a live document id, scored by exact MaxSim against the matrix it holds at that moment
            for uid, score in results:
                assert uid in snapshot, f"{uid} is not in the index"
                assert score == pytest.approx(maxsim(queries[query], documents[snapshot[uid]]), abs=1e-5)
            checked[0] += 1
            x += 1

    def writer():
        for step in range(150, 400, 25):
            with lock.write():
                # New ids, replacements of existing ids and deletes
                batch = [(f"d{x}", documents[x], None) for x in range(step, step + 20)]
                batch += [(f"d{x - 150}", documents[x], None) for x in range(step + 20, step + 25)]
                embeddings.upsert(batch)
                current.update({uid: x for x, (uid, _, _) in zip(list(range(step, step + 25)), batch)})
                removed = embeddings.delete([f"d{step - 100}", f"d{step - 99}"])
                for uid in removed:
                    current.pop(uid)

    race.run([reader] * 3, writer)
    assert embeddings.count() == len(current)


def test_readers_writer_lock():
    # Readers overlap; a writer waits for them and excludes them; a waiting writer blocks new readers
    lock, events, inside = ReadWriteLock(), [], threading.Event()

    def read(name, hold):
        with lock.read():
            events.append(f"{name}+")
            inside.set()
            time.sleep(hold)
            events.append(f"{name}-")

    def write():
        with lock.write():
            events.append("w+")
            time.sleep(0.05)
            events.append("w-")

    first = threading.Thread(target=read, args=("r1", 0.3))
    first.start()
    inside.wait()
    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.05)
    late_reader = threading.Thread(target=read, args=("r2", 0))
    late_reader.start()
    for thread in (first, writer, late_reader):
        thread.join(timeout=10)

    assert events == ["r1+", "r1-", "w+", "w-", "r2+", "r2-"]

    # The writer may read and write again without deadlock
    with lock.write():
        with lock.read():
            with lock.write():
                pass


def test_ann_methods_take_the_lock(tmp_path):
    # Deterministic check of the wiring: reads wait for a held write lock, writes wait for a held read lock
    fde = plugins.lookup("encodings", "muvera")(dimension=DIMENSION, repetitions=2)
    documents = matrices(20, 5)
    tokens, offsets = pack(documents)
    rows = LateArray(fde(tokens, offsets, "data"), tokens=tokens, offsets=offsets, encoding=fde.config())
    query = LateArray(fde(*pack(documents[:1]), "query"), tokens=documents[0], offsets=np.array([0, len(documents[0])]), encoding=fde.config())

    ann = Muvera({"muvera": {"repetitions": 2}})
    ann.index(rows)

    calls = {
        "read": [lambda: ann.search(query, 3), ann.count],
        "write": [lambda: ann.append(rows), lambda: ann.delete([1]), lambda: ann.save(str(tmp_path / "index"))],
    }
    for held, blocked in [("write", "read"), ("read", "write")]:
        for call in calls[blocked]:
            finished = threading.Event()
            with getattr(ann.lock, held)():
                thread = threading.Thread(target=lambda call=call: (call(), finished.set()))
                thread.start()
                assert not finished.wait(0.2), f"a {blocked} call ran while the lock was held for {held}"
            assert finished.wait(30)
            thread.join()


def test_mixed_category_encoding_threads(pylate_model):
    # Queries (padded to query_length with [MASK]) and documents (padded to the longest, truncated at document_length)
    # encoded at the same time from several threads: every matrix equals the single-threaded encoding. A fast tokenizer
    # keeps padding and truncation as state set per call, so without the encoder's tokenizer lock this mixes them up.
    from txtai_muvera.core.encoder import LateEncoder

    from helpers import TEXTS

    encoder = LateEncoder(str(pylate_model), gpu=False, batchsize=4)
    documents = [text * (1 + x % 4) for x, text in enumerate(TEXTS)]
    queries = [text.split()[0] + " " + text.split()[-1] for text in TEXTS]
    expected = {"query": encoder.encode(queries, "query"), "data": encoder.encode(documents, "data")}

    failures, rounds = [], 25

    def work(x):
        generator = np.random.default_rng(x)
        for _ in range(rounds):
            category = "query" if generator.random() < 0.5 else "data"
            texts = queries if category == "query" else documents
            try:
                for y, matrix in enumerate(encoder.encode(texts, category)):
                    if matrix.shape != expected[category][y].shape or not np.allclose(matrix, expected[category][y], atol=1e-5):
                        failures.append(f"thread {x}: {category} {y} shape {matrix.shape}, expected {expected[category][y].shape}")
            except Exception as error:  # pylint: disable=W0703
                failures.append(f"thread {x}: {type(error).__name__}: {error}")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=work, args=(x,)) for x in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
            assert not thread.is_alive(), "an encoding thread hangs"
    finally:
        sys.setswitchinterval(interval)

    assert not failures, failures[:5]
