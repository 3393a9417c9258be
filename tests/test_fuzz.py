"""
Loader fuzz test: the plugin's files of a saved index (muvera.json, fde.npy, tokens/*; with int8 tokens and candidate
rows also their scales) mutated hundreds of ways, one
class at a time: bit flips, truncation, files swapped in from another index, special files, symlinks leaving the
folder, deep nesting and huge numbers. Every load either raises IndexFileError or answers exactly as the undamaged
index; nothing hangs and no other exception escapes.
"""

import collections
import json
import os
import shutil
import threading

import numpy as np
import pytest

from txtai import Embeddings

from txtai_muvera.ann import IndexFileError, Muvera

from helpers import TEXTS, late

# Files of a Muvera folder (exact FDE search) the plugin writes
FILES = ["muvera.json", "fde.npy", "tokens/store.json", "tokens/offsets.npy", "tokens/deleted.npy", "tokens/tokens.npy"]

# With int8 tokens and int8 candidate rows
INT8FILES = FILES + ["tokens/scales.npy", "fde-scales.npy"]

# Mutation classes
CLASSES = ["flip", "truncate", "swap", "special", "symlink", "nesting", "numbers"]

# Seconds a load and search may take before it counts as a hang
TIMEOUT = 20


@pytest.fixture(scope="module")
def indexes(pylate_model, tmp_path_factory):
    """
    The index under test, another index to swap files from (other dtype and count), its config, queries and files.

    Returns:
        (index folder, other index folder, config, queries, files)
    """

    return build(pylate_model, tmp_path_factory.mktemp("fuzz"), {}, {"dtype": "float32"}, FILES)


@pytest.fixture(scope="module")
def int8indexes(pylate_model, tmp_path_factory):
    """
    The same with int8 tokens and int8 candidate rows, and another such index (other count).
    """

    settings = {"dtype": "int8", "encodingdtype": "int8"}
    return build(pylate_model, tmp_path_factory.mktemp("fuzz8"), settings, settings, INT8FILES)


def build(model, root, settings, othersettings, files):
    """
    Builds the index under test and the other index.

    Returns:
        (index folder, other index folder, config, queries, files)
    """

    embeddings = Embeddings(late(model, repetitions=4, candidates=50, **settings))
    embeddings.index([(x, text, None) for x, text in enumerate(TEXTS)])
    embeddings.delete([3])
    embeddings.save(str(root / "index"))
    queries = [embeddings.batchtransform([(None, query, None)]) for query in ["virus cases", "stock market", "frog species", "solar cells"]]
    config = dict(embeddings.config)

    other = Embeddings(late(model, repetitions=4, candidates=50, **othersettings))
    other.index([(x, text[::-1], None) for x, text in enumerate(TEXTS + TEXTS[:3])])
    other.save(str(root / "other"))

    return str(root / "index" / "embeddings"), str(root / "other" / "embeddings"), config, queries, files


def answers(ann, queries):
    """
    Count and every result of each query.
    """

    return ann.count(), [ann.search(query, len(TEXTS))[0] for query in queries]


def mutate(kind, folder, other, outside, generator, files):
    """
    Applies one mutation of a class to one of files.

    Returns:
        description
    """

    name = files[generator.integers(len(files))]
    target = os.path.join(folder, name)
    size = os.path.getsize(target)

    if kind == "none":
        return "unchanged"

    if kind == "flip":
        # 1 to 3 random bits anywhere in the file
        with open(target, "r+b") as handle:
            for _ in range(generator.integers(1, 4)):
                position = int(generator.integers(size))
                handle.seek(position)
                byte = handle.read(1)[0]
                handle.seek(position)
                handle.write(bytes([byte ^ (1 << int(generator.integers(8)))]))
        return f"flip {name}"

    if kind == "truncate":
        length = int(generator.integers(size))
        with open(target, "r+b") as handle:
            handle.truncate(length)
        return f"truncate {name} to {length}"

    if kind == "swap":
        # The same file of another index (other count and dtype), or a whole folder of it
        if generator.random() < 0.2:
            shutil.rmtree(os.path.join(folder, "tokens"))
            shutil.copytree(os.path.join(other, "tokens"), os.path.join(folder, "tokens"))
            return "swap tokens/"
        shutil.copy(os.path.join(other, name), target)
        return f"swap {name}"

    if kind == "special":
        os.remove(target)
        if hasattr(os, "mkfifo") and generator.random() < 0.7:
            os.mkfifo(target)
            return f"fifo {name}"
        os.mkdir(target)
        return f"folder {name}"

    if kind == "symlink":
        copy = os.path.join(outside, name.replace("/", "_"))
        shutil.copy(target, copy)
        os.remove(target)
        destination = "/dev/zero" if os.path.exists("/dev/zero") and generator.random() < 0.5 else copy
        os.symlink(destination, target)
        return f"symlink {name} -> {destination}"

    if kind == "nesting":
        # Deeply nested JSON: the whole metadata file or one of its fields
        name = ["muvera.json", "tokens/store.json"][generator.integers(2)]
        target = os.path.join(folder, name)
        depth = int(generator.choice([1000, 100000]))
        with open(target, "rb") as handle:
            data = handle.read()
        if generator.random() < 0.5:
            data = b"[" * depth + b"]" * depth
        else:
            data = data.replace(b'"format"', b'"nested": ' + b"[" * depth + b"]" * depth + b', "format"', 1)
        with open(target, "wb") as handle:
            handle.write(data)
        return f"nesting {name} {depth}"

    # Huge or invalid numbers: a JSON number field or a .npy header dimension
    number = str(generator.choice(["1" + "0" * 30, "1e308", "-1", "1" + "0" * 5000, "NaN", "Infinity", "0", "4294967297"])).encode()
    if name.endswith(".npy"):
        with open(target, "r+b") as handle:
            data = bytearray(handle.read(4096))
            start = data.find(b"'shape': (") + len(b"'shape': (")
            end = start + data[start:].find(b",") if data[start:].find(b",") >= 0 else start + data[start:].find(b")")
            header = data[:start] + number + data[end:]
            handle.seek(0)
            handle.write(header)
        return f"number {number[:12]!r} in {name} header"

    with open(target, "rb") as handle:
        data = handle.read()
    fields = [b'"documents": ', b'"dimensions": ', b'"rows": ', b'"tokens": ', b'"dimension": ', b'"bytes": ', b'"block": ']
    present = [field for field in fields if field in data]
    field = present[generator.integers(len(present))]
    start = data.find(field) + len(field)
    end = start
    while end < len(data) and data[end : end + 1] in b"-0123456789":
        end += 1
    with open(target, "wb") as handle:
        handle.write(data[:start] + number + data[end:])
    return f"number {number[:12]!r} in {name} {field.decode()}"


def run(indexes, tmp_path, count, seed, classes=None, policy=None):
    """
    Runs count mutations, spread evenly over the classes.

    Args:
        indexes: indexes fixture
        tmp_path: scratch folder
        count: number of mutations
        seed: random seed
        classes: mutation classes, all by default
        policy: overrides the verify setting

    Returns:
        (outcome counts, failures)
    """

    source, other, config, queries, files = indexes
    classes = classes or CLASSES
    if policy:
        config = {**config, "muvera": {**config["muvera"], "verify": policy}}
    expected = answers(loadann(source, config), queries)

    outcomes, failures = collections.Counter(), []
    generator = np.random.default_rng(seed)
    for x in range(count):
        kind = classes[x % len(classes)]
        # A copy of the whole txtai index folder: the Muvera folder is checked against txtai's documents
        folder, outside = str(tmp_path / "case" / "embeddings"), str(tmp_path / "outside")
        shutil.rmtree(tmp_path / "case", ignore_errors=True)
        shutil.rmtree(outside, ignore_errors=True)
        os.makedirs(outside)
        shutil.copytree(os.path.dirname(source), str(tmp_path / "case"), symlinks=True)
        description = mutate(kind, folder, other, outside, generator, files)

        result = {}

        def attempt():
            try:
                result["answers"] = answers(loadann(folder, config), queries)
            except IndexFileError as error:
                result["refused"] = str(error)
            except BaseException as error:  # pylint: disable=W0718
                result["error"] = f"{type(error).__name__}: {error}"

        thread = threading.Thread(target=attempt, daemon=True)
        thread.start()
        thread.join(TIMEOUT)
        if thread.is_alive():
            failures.append(f"hang: {description}")
            outcomes["hang"] += 1
        elif "error" in result:
            failures.append(f"{description}: {result['error'][:300]}")
            outcomes["other exception"] += 1
        elif "refused" in result:
            outcomes["refused"] += 1
        elif result["answers"] != expected:
            failures.append(f"silent wrong answer: {description}")
            outcomes["wrong"] += 1
        else:
            outcomes["loaded, identical answers"] += 1

    return outcomes, failures


def loadann(path, config):
    """
    Loads a Muvera folder the way Embeddings.load does, with the config txtai saved.
    """

    ann = Muvera({**config, "muvera": dict(config["muvera"])})
    ann.load(path)
    return ann


def test_fuzz_harness_sees_wrong_answers(indexes, tmp_path):
    # The harness itself: an unchanged folder answers identically, and with checksums off (verify: off) bit flips in the
    # data arrays do give silent wrong answers, which the harness reports
    outcomes, failures = run(indexes, tmp_path, 3, 0, ["none"])
    assert outcomes == {"loaded, identical answers": 3}, (outcomes, failures)

    outcomes, _ = run(indexes, tmp_path, 40, 0, ["flip"], policy="off")
    assert outcomes["wrong"] > 0, outcomes


def test_fuzz_loaders_subset(indexes, tmp_path):
    # A quick pass over every class
    outcomes, failures = run(indexes, tmp_path, 70, 1)
    assert not failures, failures[:10]
    assert outcomes["refused"] > 0


def test_fuzz_loaders_500(indexes, tmp_path):
    # At least 500 mutations: zero silent wrong answers, zero hangs, zero exceptions other than IndexFileError
    outcomes, failures = run(indexes, tmp_path, 560, 2)
    print(json.dumps(dict(outcomes)))
    assert not failures, failures[:10]
    assert sum(outcomes.values()) >= 500


def test_fuzz_int8_files(int8indexes, tmp_path):
    # int8 tokens and candidate rows: their scales files too
    outcomes, failures = run(int8indexes, tmp_path, 140, 3)
    assert not failures, failures[:10]
    assert outcomes["refused"] > 0
