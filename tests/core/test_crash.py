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
# txtai_muvera.indexfolder.save; the test kills that child
SAVER = """
import json, os, sys

import numpy as np

from txtai import Embeddings
from txtai_muvera.indexfolder import save

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
@pytest.mark.slow
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


# Saving process for the crash-at-every-step test. The usual txtai workflow: load an index, change it, save it over
# itself with txtai's own (non-atomic) Embeddings.save. The parent builds the previous index (the test copies it to the
# index folder before each step) and the changes; per request it forks a child that loads the folder, applies the
# changes and saves, killing itself with SIGKILL just before its k-th file-system step (audit events: opens for
# writing, renames, removals, folder creation and deletion, SQLite connections)
STEPS = """
import json, os, signal, sys

import numpy as np
import torch

from txtai import Embeddings

torch.set_num_threads(1)
model, path, config, queries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
generator = np.random.default_rng(0)

def document():
    matrix = generator.standard_normal((generator.integers(5, 15), 16)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)

def answers(embeddings):
    return {"count": embeddings.count(), "results": [[[r["id"], round(r["score"], 4)] for r in embeddings.search(q, 10)] for q in queries]}

# Previous index, saved to the pristine folder the test copies
models = {}
embeddings = Embeddings(config, models=models)
embeddings.index([(x, document(), f"tag {x}") for x in range(60)])
embeddings.save(path + ".pristine")
previous = answers(embeddings)
embeddings.close()

# Changes: upserts, new documents, deletes
upserts = [(x, document(), f"new {x}") for x in range(0, 60, 7)] + [(x, document(), None) for x in range(60, 70)]
deletes = list(range(1, 60, 11))

def change(embeddings):
    embeddings.upsert(upserts)
    embeddings.delete(deletes)
    return embeddings

# Kill hook: counts file-system steps, kills before step state["kill"]
EVENTS = {"os.rename", "os.replace", "os.remove", "os.unlink", "os.rmdir", "shutil.rmtree", "os.mkdir", "shutil.copyfile", "sqlite3.connect"}
state = {"count": 0, "kill": None}

def writes(event, args):
    if event == "open":
        mode, flags = args[1], args[2]
        writing = isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        return (isinstance(mode, str) and any(c in mode for c in "wax+")) or writing
    return event in EVENTS

def hook(event, args):
    if state["kill"] is not None and writes(event, args):
        state["count"] += 1
        if state["count"] == state["kill"]:
            os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(hook)

# Changed index answers, computed on a copy
import shutil
shutil.copytree(path + ".pristine", path + ".changed")
changed = answers(change(Embeddings(models=models).load(path + ".changed")))
print(json.dumps({"previous": previous, "changed": changed}), flush=True)

for line in sys.stdin:
    pid = os.fork()
    if not pid:
        # Child: load, change, save over the folder; killed before step k
        embeddings = change(Embeddings(models=models).load(path))
        state["count"], state["kill"] = 0, int(line)
        embeddings.save(path)
        os._exit(0)

    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": status}), flush=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork") or not hasattr(sys, "addaudithook"), reason="needs os.fork and audit hooks")
def test_kill_at_every_step_of_embeddings_save(pylate_model, tmp_path):
    # txtai's Embeddings.save killed just before each of its file-system steps: the folder loads as the previous or the
    # changed index, and takes new writes correctly (offset padding), or it is refused with IndexFileError
    from txtai_muvera.ann import IndexFileError

    path = str(tmp_path / "index")
    saver = subprocess.Popen(
        [sys.executable, "-c", STEPS, str(pylate_model), path, json.dumps(late(pylate_model, repetitions=4)), json.dumps(QUERIES)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    try:
        expected = json.loads(saver.stdout.readline())
        previous, changed = expected["previous"], expected["changed"]
        assert previous != changed
        pristine = f"{path}.pristine"

        # Kill before step 1, 2, ... until a save completes
        models, outcomes, step, complete = {}, {}, 0, False
        while not complete:
            step += 1
            assert step < 500, "saves never complete"
            shutil.rmtree(path, ignore_errors=True)
            shutil.copytree(pristine, path)

            # Killed just before this step (the last one is not reached: a complete save)
            saver.stdin.write(f"{step}\n")
            saver.stdin.flush()
            status = json.loads(saver.stdout.readline())["status"]
            complete = not os.WIFSIGNALED(status)

            try:
                loaded = Embeddings(models=models).load(path)
            except IndexFileError as error:
                outcomes[step] = f"refused: {error}"
                continue

            state = answers(loaded)
            assert state in (previous, changed), f"step {step}: index is neither the previous nor the new one"

            # Writes after the load land on the right rows
            loaded.upsert([("probe", "volcano erupted pacific island", None)])
            assert loaded.search("volcano erupted pacific island", 1)[0]["id"] == "probe", f"step {step}: new document not found by its text"
            loaded.delete(["probe"])
            assert answers(loaded) == state, f"step {step}: delete changed other documents"
            loaded.close()
            outcomes[step] = "previous" if state == previous else "changed"

        # Both complete outcomes occur, the last step is the complete save
        assert outcomes[step] == "changed" and "previous" in outcomes.values() and step > 10, outcomes
        print(json.dumps(outcomes))
    finally:
        saver.stdin.close()
        saver.terminate()
        saver.wait(timeout=30)
