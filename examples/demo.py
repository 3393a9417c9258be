"""
Demo: indexes a small real corpus (120 SciFact abstracts) with a late-interaction model and prints ranked results.

    python examples/demo.py                                  # neuml/colbert-muvera-micro from the model hub
    python examples/demo.py --local ../shared/models/minilm-colbert
    TXTAI_MUVERA_LOCAL_MODEL=../shared/models/minilm-colbert python examples/demo.py

The local folder is used only when the model hub cannot be reached (or with --offline). There is no fallback to a
random model.
"""

import argparse
import json
import os
import sys
import time

from pathlib import Path

DATA = Path(__file__).parent / "data"


def hubreachable(model):
    """
    Checks that the model hub answers for a model id.

    Args:
        model: hub model id

    Returns:
        True when the model's config can be fetched (or is cached)
    """

    # pylint: disable=C0415
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(model, "config.json", etag_timeout=5)
        return True
    except Exception:  # pylint: disable=W0703
        return False


def main():
    parser = argparse.ArgumentParser(description="txtai-muvera demo: late-interaction search over 120 SciFact abstracts")
    parser.add_argument("--model", default="neuml/colbert-muvera-micro", help="model hub id or local folder")
    parser.add_argument("--local", default=os.environ.get("TXTAI_MUVERA_LOCAL_MODEL"), help="local model folder used when the hub cannot be reached")
    parser.add_argument("--offline", action="store_true", help="do not try the model hub")
    parser.add_argument("--queries", type=int, default=3, help="number of example queries")
    args = parser.parse_args()

    # Pick the model: hub id when the hub answers, otherwise the local folder
    model = args.model
    if not os.path.isdir(model) and (args.offline or not hubreachable(model)):
        if not args.local:
            print(f"Model hub unreachable for {model} and no local model given: pass --local FOLDER or set TXTAI_MUVERA_LOCAL_MODEL", file=sys.stderr)
            return 1
        print(f"Model hub unreachable: using local model {args.local}")
        model = args.local

    # pylint: disable=C0415
    from txtai import Embeddings

    documents = [json.loads(line) for line in open(DATA / "scifact-sample.jsonl", encoding="utf-8")]
    queries = [json.loads(line) for line in open(DATA / "scifact-queries.jsonl", encoding="utf-8")][: args.queries]

    # Late-interaction index: FDE candidates re-ranked with exact MaxSim
    embeddings = Embeddings(path=model, method="txtai_muvera.LateVectors", backend="txtai_muvera.Muvera", content=True)

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
