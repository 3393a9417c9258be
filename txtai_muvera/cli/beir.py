"""
BEIR module
"""

import json

from pathlib import Path


def readbeir(folder, split="test", limit=None):
    """
    Loads a BEIR folder: corpus.jsonl, queries.jsonl and qrels/{split}.tsv. Documents are title + " " + text. Queries
    absent from the qrels are skipped.

    Args:
        folder: BEIR folder
        split: qrels split
        limit: maximum number of queries, None for all

    Returns:
        (document ids, document texts, {query id: query text}, qrels {query id: {document id: relevance}})
    """

    folder = Path(folder)
    paths = {name: folder / name for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv")}
    for name, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/{split}.tsv ({name})")

    # Corpus
    ids, texts = [], []
    for row in jsonl(paths["corpus.jsonl"]):
        ids.append(str(row["_id"]))
        texts.append(f"{row.get('title') or ''} {row.get('text') or ''}")

    # Qrels, header line skipped
    qrels = {}
    with open(paths[f"qrels/{split}.tsv"], encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3 or not fields[2].strip().lstrip("-").isdigit():
                continue
            qrels.setdefault(fields[0], {})[fields[1]] = int(fields[2])

    # Judged queries, file order
    queries = {}
    for row in jsonl(paths["queries.jsonl"]):
        uid = str(row["_id"])
        if uid in qrels:
            queries[uid] = row["text"]
    if limit is not None:
        queries = dict(list(queries.items())[:limit])

    if not ids or not queries:
        raise ValueError(f"{folder} has {len(ids)} documents and {len(queries)} queries with {split} qrels, both must be > 0")

    return ids, texts, queries, {uid: qrels[uid] for uid in queries}


def readcorpus(path):
    """
    Reads documents: a BEIR folder (corpus.jsonl, title + " " + text), a jsonl file (JSON strings, or objects with text,
    optional title and _id/id) or a text file (one document per line).

    Args:
        path: folder or file

    Returns:
        (document ids, document texts)
    """

    path = Path(path)
    if path.is_dir():
        path = path / "corpus.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass a BEIR folder with corpus.jsonl, a jsonl file or a text file")

    ids, texts = [], []
    rows = jsonl(path) if path.suffix in (".jsonl", ".json") else textlines(path)
    for x, row in enumerate(rows):
        if isinstance(row, dict):
            ids.append(str(row.get("_id", row.get("id", x))))
            texts.append(f"{row.get('title') or ''} {row.get('text') or ''}" if "title" in row else str(row.get("text") or ""))
        else:
            ids.append(str(x))
            texts.append(str(row))

    if len(set(ids)) != len(ids):
        raise ValueError(f"{path} has duplicate document ids")

    return ids, texts


def readqueries(path):
    """
    Reads query texts: a jsonl file (JSON strings, or objects with text or query) or a text file (one per line).

    Args:
        path: file

    Returns:
        list of texts
    """

    path = Path(path)
    if path.suffix in (".jsonl", ".json"):
        return [row if isinstance(row, str) else str(row.get("text", row.get("query", ""))) for row in jsonl(path)]

    return list(textlines(path))


def jsonl(path):
    """
    Reads a JSON lines file.

    Args:
        path: file path

    Returns:
        generator of dicts
    """

    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def textlines(path):
    """
    Reads the non-empty lines of a text file.

    Args:
        path: file path

    Returns:
        generator of lines without their line break
    """

    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield line.rstrip("\n")
