"""
Crash safety tests: a saving process is killed with SIGKILL at random points while it saves an index over the previous
one. After every kill the folder loads complete, as the previous index or the new one, never a mix.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from txtai import Embeddings

from txtai_muvera.core.folder import recover

from helpers import late

# Queries compared before and after each kill
QUERIES = ["virus cases", "stock market", "bear attack"]

# Saving process: builds the previous index (1000 pre-encoded documents, saved) and a changed one (upserts and deletes,
# kept in memory), then forks one child per request that saves the changed index over the previous one with
# txtai_muvera.core.folder.save; the test kills that child
SAVER = """
import json, os, sys

import numpy as np

from txtai import Embeddings
from txtai_muvera.core.folder import save

model, path, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
generator = np.random.default_rng(0)

def document():
    # Pre-encoded token matrix: unit vectors of the model's width (16), 20 to 40 tokens
    matrix = generator.standard_normal((generator.integers(20, 41), 16)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)

def answers(embeddings):
    return {"count": embeddings.count(), "results": [[(r["id"], round(r["score"], 4)) for r in embeddings.search(q, 10)] for q in QUERIES]}

QUERIES = json.loads(sys.argv[4])
embeddings = Embeddings(config)
embeddings.index([(x, document(), f"tag {x}") for x in range(1000)])
save(embeddings, path)
previous = answers(embeddings)

# Changed index, never saved by this process
embeddings.upsert([(x, document(), f"new {x}") for x in range(0, 1000, 7)])
embeddings.delete(list(range(1, 1000, 11)))
changed = answers(embeddings)
print(json.dumps({"previous": previous, "changed": changed}), flush=True)

for line in sys.stdin:
    pid = os.fork()
    if not pid:
        # Child: file IO only (no torch work after the fork)
        save(embeddings, path)
        os._exit(0)

    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": status}), flush=True)
"""


def answers(embeddings):
    """
    Count and top 10 ids and scores of the test queries.
    """

    return {"count": embeddings.count(), "results": [[[r["id"], round(r["score"], 4)] for r in embeddings.search(q, 10)] for q in QUERIES]}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_kill_during_save(pylate_model, tmp_path):
    path, pristine = str(tmp_path / "index"), str(tmp_path / "pristine")
    saver = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(pylate_model), path, json.dumps(late(pylate_model, repetitions=8)), json.dumps(QUERIES)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    try:
        # The saver saved the previous index and holds the changed one
        expected = json.loads(saver.stdout.readline())
        previous, changed = expected["previous"], expected["changed"]
        assert previous != changed
        shutil.copytree(path, pristine)

        # Time one complete save: kills land anywhere from its start to just past its end
        duration = 0
        for _ in range(2):
            start = time.time()
            status = save(saver)
            duration = max(duration, time.time() - start)
            assert status == 0

        models, outcomes = {}, []
        for trial in range(15):
            # Start from the previous index
            shutil.rmtree(path)
            shutil.copytree(pristine, path)

            status = save(saver, random.Random(trial).uniform(0, duration * 1.1))

            # Complete: the previous index or the new one, with the same count and top results and scores
            loaded = Embeddings(models=models).load(recover(path))
            state = answers(loaded)
            loaded.close()
            assert state in (previous, changed), f"trial {trial}: index is neither the previous nor the new one"
            outcomes.append((os.WIFSIGNALED(status), state == previous))

        # Most kills land mid-save: both outcomes happen
        assert sum(killed for killed, _ in outcomes) >= 7, outcomes
        assert any(old for _, old in outcomes) and not all(old for _, old in outcomes), outcomes
    finally:
        saver.stdin.close()
        saver.terminate()
        saver.wait(timeout=30)


def save(saver, delay=None):
    """
    Asks the saver for one save and kills it after delay seconds, if given.

    Returns:
        the save process's wait status
    """

    saver.stdin.write("save\n")
    saver.stdin.flush()
    pid = json.loads(saver.stdout.readline())["pid"]
    if delay is not None:
        time.sleep(delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    return json.loads(saver.stdout.readline())["status"]


def test_failed_save_after_interrupted_swap_keeps_previous(tmp_path):
    # A crash between the two renames leaves path missing and path.old complete; a later save that fails before its
    # own swap must not delete that copy
    from txtai_muvera.core.folder import replace

    path = tmp_path / "folder"
    (tmp_path / "folder.old").mkdir()
    (tmp_path / "folder.old" / "data").write_text("previous")

    def failing(folder):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace(str(path), failing)

    assert (path / "data").read_text() == "previous"
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".new")]
