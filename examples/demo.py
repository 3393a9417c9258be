"""
Demo: indexes a small real corpus (120 SciFact abstracts) with a late-interaction model and prints ranked results.

    python examples/demo.py                                  # neuml/colbert-muvera-micro from the model hub
    python examples/demo.py --local /path/to/colbert-model   # a local model folder when the hub cannot be reached
    TXTAI_MUVERA_LOCAL_MODEL=/path/to/colbert-model python examples/demo.py

The local folder is used when the model hub cannot be reached (or with --offline) and the hub model is not in the
local cache. There is no fallback to a random model.
"""

import argparse
import json
import os
import sys
import time

from pathlib import Path

DATA = Path(__file__).parent / "data"


def choose(args):
    """
    Picks the model: the hub id when the hub answers (or the model is cached), otherwise the local folder.

    Args:
        args: parsed arguments

    Returns:
        (model path, None) or (None, one-line message saying why no model can be used)
    """

    # pylint: disable=C0415
    from txtai_muvera.core import hub

    # A local folder that was named must exist, whatever the hub says
    if args.local and not os.path.isdir(args.local):
        source = "--local" if args.local != os.environ.get("TXTAI_MUVERA_LOCAL_MODEL") else "TXTAI_MUVERA_LOCAL_MODEL"
        return None, f"{source} {args.local}: no such folder, give the folder of a PyLate or Stanford ColBERT model"

    model = args.model
    if os.path.isdir(model):
        return model, None

    # --offline is huggingface_hub's offline mode
    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"

    ok, reason = hub.reachable()
    if ok:
        return model, None

    # Hub unreachable: a cached copy of the hub model, else the local folder
    try:
        hub.folder(model)
        return model, None
    except hub.HubError:
        pass

    if args.local:
        print(f"Model hub unreachable ({reason}): using local model {args.local}")
        return args.local, None

    return None, f"Model hub unreachable ({reason}) for {model}: give a local model folder with --local FOLDER or TXTAI_MUVERA_LOCAL_MODEL=FOLDER"


def main():
    parser = argparse.ArgumentParser(description="txtai-muvera demo: late-interaction search over 120 SciFact abstracts")
    parser.add_argument("--model", default="neuml/colbert-muvera-micro", help="model hub id or local folder")
    parser.add_argument("--local", default=os.environ.get("TXTAI_MUVERA_LOCAL_MODEL"), help="local model folder used when the hub cannot be reached")
    parser.add_argument("--offline", action="store_true", help="do not try the model hub")
    parser.add_argument("--queries", type=int, default=3, help="number of example queries")
    args = parser.parse_args()

    model, problem = choose(args)
    if problem:
        print(problem, file=sys.stderr)
        return 1

    # pylint: disable=C0415
    from txtai import Embeddings
    from txtai_muvera.errors import ConfigurationError

    documents = [json.loads(line) for line in open(DATA / "scifact-sample.jsonl", encoding="utf-8")]
    queries = [json.loads(line) for line in open(DATA / "scifact-queries.jsonl", encoding="utf-8")][: args.queries]

    # Late-interaction index: FDE candidates re-ranked with exact MaxSim, a configuration problem is one line
    try:
        embeddings = Embeddings(path=model, method="txtai_muvera.LateVectors", backend="txtai_muvera.Muvera", content=True)
    except ConfigurationError as error:
        print(error, file=sys.stderr)
        return 1

    start = time.perf_counter()
    embeddings.index((doc["id"], f"{doc['title']} {doc['text']}", None) for doc in documents)
    print(f"Indexed {embeddings.count()} documents in {time.perf_counter() - start:.1f}s with {model}\n")

    for query in queries:
        print(f"Query: {query['text']}")
        for result in embeddings.search(query["text"], 3):
            mark = "*" if result["id"] in query["relevant"] else " "
            print(f"  {mark} {result['score']:.4f}  [{result['id']}] {result['text'][:90]}")
        print()

    print("* = judged relevant in SciFact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
