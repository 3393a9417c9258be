"""
LEMUR sweep on BEIR SciFact: fits our encoder once with the given settings (one thread), then scores document encodings
for several stored-sample sizes and ridge penalties from one set of sample targets. Prints one JSON row per variant.

    .venv/bin/python benchmarks/sweep_lemur.py '{"targets": 1024, "learn": 60000, "sample": 32768}' --sizes 16384,32768 \\
        --cache /work/cache/scifact-minilm-tokens.safetensors --exact /tmp/exact.npy

--learnqueries learns from document spans encoded as queries, as an index does; --rows int8 scores the document rows
as an index with encodingdtype: int8 stores them. The sample sizes take the first tokens of the stored sample, a random
subset of it.

The exact MaxSim scores file is the one benchmarks/bench_lemur.py --exact writes.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# pylint: disable=C0413
from bench_lemur import figures, learnqueries
from common import MODEL, SCIFACT, judgedvectors
from txtai_muvera.cli.environment import cputime
from txtai_muvera.core.lemur import Lemur
from txtai_muvera.core.lemurfit import fit
from txtai_muvera.core.scan import ENCODINGDTYPES, encodingrows
from txtai_muvera.core.maxsim import chunks, segmax


def main():
    """
    Runs the sweep.
    """

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", help="JSON fit settings")
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--folder", default=str(SCIFACT))
    parser.add_argument("--cache", default=None)
    parser.add_argument("--exact", required=True, help="exact MaxSim scores (.npy) from bench_lemur.py --exact")
    parser.add_argument("--sizes", default="8192", help="comma-separated stored-sample sizes, at most the settings' sample")
    parser.add_argument("--ridges", default="0,0.0001,0.001,0.01,0.1")
    parser.add_argument("--learnqueries", action="store_true", help="learn from document spans encoded as queries, as an index does")
    parser.add_argument("--rows", default="float32", choices=ENCODINGDTYPES, help="document rows stored as")
    args = parser.parse_args()

    torch.set_num_threads(1)
    settings = json.loads(args.settings)
    ids, dtokens, doffsets, qids, qtokens, qoffsets, qrels = judgedvectors(args.model, args.folder, args.cache)
    dtokens, qtokens = dtokens.astype(np.float32), qtokens.astype(np.float32)
    exact = torch.from_numpy(np.load(args.exact))

    # Learn queries, as an index encodes them
    querytokens, learnseconds = None, 0
    if args.learnqueries:
        lemur = Lemur(dtokens.shape[1])
        learnseconds = learnqueries(lemur, args.model, args.folder)
        querytokens = lemur.querytokens

    start = cputime()
    model, statistics = fit(dtokens, doffsets, progress=False, querytokens=querytokens, **settings)
    seconds = cputime() - start + learnseconds
    print(json.dumps({**statistics, "fit cpu s": seconds}), flush=True)
    qrows = model.queries(qtokens, qoffsets).numpy()

    # Standardized targets of the whole stored sample against every document, once
    with torch.inference_mode():
        features = model.network.features(model.sample).double()
        tokens = model.prepare(dtokens)
        start = cputime()
        targets = torch.empty((len(model.sample), len(doffsets) - 1))
        for s, e in chunks(doffsets, max(1, (1 << 25) // len(model.sample))):
            targets[:, s:e] = (segmax(model.sample, tokens[doffsets[s] : doffsets[e]], doffsets[s : e + 1] - doffsets[s]) - model.mean) / model.std
        print(json.dumps({"targets cpu s": cputime() - start}), flush=True)

    # Least squares on the first n sample tokens: pseudo-inverse (ridge 0) or ridge relative to the mean eigenvalue
    for size in [int(x) for x in args.sizes.split(",")]:
        f, t = features[:size], targets[:size].double()
        values, vectors_ = torch.linalg.eigh(f.T @ f)
        rhs = vectors_.T @ (f.T @ t)
        for ridge in [float(x) for x in args.ridges.split(",")]:
            inverse = (
                torch.where(values > values.max() * 1e-12, 1 / values, torch.zeros_like(values))
                if not ridge
                else 1 / (values + ridge * values.mean())
            )
            drows = ((vectors_ * inverse) @ rhs).T.float().numpy()
            drows = np.asarray(encodingrows(encodingrows(drows, args.rows), "float32"), dtype=np.float32)
            extra = {"settings": settings, "sample": size, "ridge": ridge, "loss": statistics.get("loss"), "rows": args.rows}
            figures(f"sample={size} ridge={ridge}", qrows, drows, exact, ids, qids, qrels, seconds, extra)


if __name__ == "__main__":
    main()
