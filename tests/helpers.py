"""
Shared test helpers: a small corpus, config builders, brute-force MaxSim, a local generator and file damage.
"""

import json
import socket

import numpy as np
import pytest
import torch

from txtai_muvera.core.files import SEAL, writejson

# Tolerance of search scores against a fresh MaxSim of freshly encoded texts: float32 rounding where encoders run float32
# (CPU, MPS); encoders run float16 on CUDA, where token vectors move with batch composition (about 1e-4 seen)
SCORES = 2e-3 if torch.cuda.is_available() else 1e-5

# Small corpus with distinct topics so rankings are meaningful even with a random model
TEXTS = [
    "US tops 5 million confirmed virus cases",
    "Canada's last fully intact ice shelf has suddenly collapsed, forming a Manhattan-sized iceberg",
    "Beijing mobilises invasion craft along coast as Taiwan tensions escalate",
    "The National Park Service warns against sacrificing slower friends in a bear attack",
    "Maine man wins $1M from $25 lottery ticket",
    "Make huge profits without work, earn up to $100,000 a day",
    "Protein folding predicted from amino acid sequence with deep learning",
    "Vitamin D supplements do not prevent fractures in older adults",
    "Insulin resistance is associated with obesity and type 2 diabetes",
    "The stock market rallied after the central bank cut interest rates",
    "A new species of frog was discovered in the Amazon rainforest",
    "Solar panels convert sunlight into electricity with silicon cells",
]


def late(model, **muvera):
    """
    Builds a late-interaction embeddings config.
    """

    return {"path": str(model), "method": "txtai_muvera.LateVectors", "backend": "txtai_muvera.Muvera", "content": True, "muvera": muvera}


def exactmaxsim(encoder, query, text, reduce="mean"):
    """
    Brute-force MaxSim of a query and a document, encoded afresh.
    """

    q = encoder.encode([query], category="query")[0].astype(np.float64)
    d = encoder.encode([text], category="data")[0].astype(np.float64)
    scores = (q @ d.T).max(axis=1)
    return scores.mean() if reduce == "mean" else scores.sum()


def checkscores(embeddings, encoder, queries, tolerance):
    """
    Asserts every returned score equals a fresh exact MaxSim of that query and document.
    """

    for query in queries:
        results = embeddings.search(query, 5)
        assert results
        for result in results:
            assert result["score"] == pytest.approx(exactmaxsim(encoder, query, result["text"]), abs=tolerance)

        # Sorted by score
        scores = [r["score"] for r in results]
        assert scores == sorted(scores, reverse=True)


class Echo:
    """
    A generator that answers every prompt with the prompt itself, so a test sees the context a RAG pipeline builds.
    """

    def __call__(self, prompts, **kwargs):
        return [prompt if isinstance(prompt, str) else prompt[-1]["content"] for prompt in prompts]


def freeport():
    """
    Finds a free localhost port.
    """

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tokens(generator, lengths, dimension):
    """
    Random unit token matrices.
    """

    matrices = []
    for length in lengths:
        matrix = generator.standard_normal((length, dimension)).astype(np.float32)
        matrices.append(matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12))
    return matrices


def flip(filename, position=-3):
    """
    Flips one bit of one byte of a file.
    """

    with open(filename, "r+b") as handle:
        handle.seek(position, 0 if position >= 0 else 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0x01]))


def reseal(name, change):
    """
    Changes a sealed metadata file and seals it again, as a forger would (or as an earlier build wrote it).
    """

    with open(name, encoding="utf-8") as handle:
        metadata = json.load(handle)
    metadata.pop(SEAL)
    change(metadata)
    writejson(name, metadata)
