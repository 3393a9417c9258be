"""
CLI module
"""

import argparse
import json
import os
import sys

from ..errors import configuration


# Subcommand signature
def plugins(args):  # pylint: disable=W0613
    """
    Prints what is registered with the plugin manager.

    Args:
        args: parsed arguments

    Returns:
        exit code
    """

    # pylint: disable=C0415
    from .. import plugins as manager

    for kind, entries in manager.registered().items():
        print(f"{kind}:")
        for name, target in entries.items():
            print(f"  {name:<16} {target}")

    return 0


def evaluate(args):
    """
    Evaluates late-interaction retrieval on a BEIR folder and prints a results table.

    Args:
        args: parsed arguments

    Returns:
        exit code
    """

    # pylint: disable=C0415
    from .evaluate import Evaluate
    from .report import evaluationtable, pyplot, sweepplot

    # Check matplotlib first
    if args.plot:
        pyplot()

    # --muvera, then flags
    block = {}
    if args.muvera:
        text = args.muvera
        if os.path.isfile(text):
            with open(text, encoding="utf-8") as f:
                text = f.read()
        block = json.loads(text)
        if not isinstance(block, dict):
            raise SystemExit("--muvera must be a JSON object")

    for key in ("candidates", "dtype", "repetitions", "hashes", "projection", "final"):
        if getattr(args, key) is not None:
            block[key] = getattr(args, key)

    # One-line config errors
    with configuration():
        evaluation = Evaluate(
            args.model,
            args.folder,
            split=args.split,
            queries=args.queries,
            muvera=block,
            batchsize=args.batchsize,
            gpu=not args.cpu,
            compare=args.compare,
            comparequeries=args.compare_queries,
            compareepochs=args.compare_epochs,
            comparelearn=args.compare_learn,
            progress=not args.no_progress,
            sample=args.sample,
            seed=args.seed,
        )
    results = evaluation(sweep=[int(x) for x in args.sweep.split(",")] if args.plot else None)

    # Table, JSON and plot
    print(evaluationtable(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
        print(f"\nResults written to {args.json}")
    if args.plot:
        sweepplot(results, args.plot)
        print(f"Plot written to {args.plot}")

    return 0


def tune(args):
    """
    Tunes MUVERA parameters and candidates for a model and corpus, prints the Pareto frontier and a muvera: block.

    Args:
        args: parsed arguments

    Returns:
        exit code: 0 when a configuration reaches the target recall, 1 otherwise
    """

    # pylint: disable=C0415
    from .grid import configurations
    from .report import tuningtable
    from .tune import Tune

    def commalist(text, cast=int):
        return [None if value.strip().lower() in ("none", "") else cast(value) for value in text.split(",")]

    def fillflag(value):
        if value.strip().lower() not in ("true", "false"):
            raise SystemExit(f"--fill takes true and/or false, got {value!r}")
        return value.strip().lower() == "true"

    fills = commalist(args.fill, fillflag)
    learned = json.loads(args.learned) if args.learned else []
    if not isinstance(learned, list) or not all(isinstance(x, dict) and "encoding" in x for x in learned):
        raise SystemExit('--learned takes a JSON list of settings with an encoding key, e.g. \'[{"encoding": "lemur"}]\'')
    grid = configurations(
        commalist(args.repetitions),
        commalist(args.hashes),
        commalist(args.projection),
        commalist(args.final),
        fills,
        args.baseline,
        learned,
        args.encoding,
    )
    with configuration():
        tuning = Tune(
            args.model,
            args.corpus,
            split=args.split,
            queryfile=args.query_file,
            queries=args.queries,
            sample=args.sample,
            seed=args.seed,
            grid=grid,
            depths=commalist(args.depths),
            target=args.target,
            objective=args.objective,
            dtype=args.dtype,
            batchsize=args.batchsize,
            gpu=not args.cpu,
            progress=not args.no_progress,
            encoder=args.encoder,
            encoding=args.encoding,
        )
    results = tuning(verify=args.verify)

    print(tuningtable(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
        print(f"\nResults written to {args.json}")

    return 0 if results["recommended"] else 1


def fit(args):
    """
    Trains a LEMUR learned candidate encoding on a corpus and saves it in txtai's LEMUR artifact format, for
    muvera: {encoding: lemur, path: OUTPUT}.

    Args:
        args: parsed arguments

    Returns:
        exit code
    """

    # pylint: disable=C0415
    import logging

    import torch

    from ..core.lemur import Lemur
    from ..core.ragged import pack
    from .beir import readcorpus
    from .encoders import registeredencoder

    block = json.loads(args.lemur) if args.lemur else {}
    if not isinstance(block, dict):
        raise SystemExit("--lemur must be a JSON object")

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _, texts = readcorpus(args.corpus)
    encoder = registeredencoder(args.model, gpu=not args.cpu, batchsize=args.batchsize)
    tokens, offsets = pack(encoder.encode(texts, "data", progress=not args.no_progress))

    # Learn queries like an index
    lemur = Lemur(encoder.dimension, **block)
    lemur.learnfrom(texts, lambda queries: encoder.encode(queries, "query", progress=not args.no_progress))

    statistics = lemur.fit(tokens, offsets, device="cuda" if not args.cpu and torch.cuda.is_available() else None, progress=not args.no_progress)
    lemur.model.save(args.output)
    print(json.dumps({k: v for k, v in statistics.items() if isinstance(v, (int, float, str))}))
    print(f"LEMUR artifact written to {args.output}: use muvera: {{encoding: lemur, path: {args.output}}}")

    return 0


# One statement per option
def parser():  # pylint: disable=R0915
    """
    Builds the argument parser.

    Returns:
        argparse.ArgumentParser
    """

    main = argparse.ArgumentParser(prog="txtai-muvera", description="Late-interaction retrieval with MUVERA for txtai")
    commands = main.add_subparsers(dest="command", required=True)

    command = commands.add_parser("plugins", help="list registered encoders, encodings and stores")
    command.set_defaults(run=plugins)

    # Evaluation on a BEIR folder
    command = commands.add_parser("evaluate", help="evaluate exact MaxSim, MUVERA + re-rank and MUVERA only on a BEIR folder")
    command.add_argument("model", help="late-interaction model, local folder or hub id")
    command.add_argument("folder", help="BEIR folder with corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv")
    command.add_argument("--split", default="test", help="qrels split (default: test)")
    command.add_argument("--queries", type=int, help="evaluate the first N judged queries only")
    command.add_argument("--candidates", type=int, help="MUVERA candidates re-ranked with exact MaxSim (default: 100)")
    command.add_argument("--dtype", choices=["float32", "float16", "int8"], help="token store dtype (default: float16)")
    command.add_argument("--repetitions", type=int, help="FDE repetitions (default: 20)")
    command.add_argument("--hashes", type=int, help="FDE SimHash bits, 2^hashes partitions (default: 5)")
    command.add_argument("--projection", type=int, help="FDE inner projection width, 0 for identity (default: 16)")
    command.add_argument("--final", type=int, help="FDE Count-Sketch final projection width (default: none)")
    command.add_argument("--muvera", help="muvera: config block as JSON text or a JSON file; the flags above override its keys")
    command.add_argument("--batchsize", type=int, default=32, help="encoding batch size (default: 32)")
    command.add_argument("--cpu", action="store_true", help="run on the CPU even when an accelerator is available")
    command.add_argument(
        "--compare",
        choices=["txtai", "lemur"],
        action="append",
        help="extra rows: txtai's own late-interaction pipeline (txtai), txtai's LemurTrainer + Lemur on the same vectors (lemur); repeatable",
    )
    command.add_argument("--compare-epochs", type=int, default=1, help="LemurTrainer epochs, CPU time extrapolated to 100 (default: 1)")
    command.add_argument(
        "--compare-learn", type=int, default=10000, help="LemurTrainer learn tokens, CPU time extrapolated to 100,000 (default: 10000)"
    )
    command.add_argument("--compare-queries", type=int, default=20, help="queries txtai's Reranker latency is measured on (default: 20)")
    command.add_argument("--json", help="write every figure to this JSON file")
    command.add_argument(
        "--plot",
        help="plot nDCG@10 and latency against re-ranked candidates to this PNG file. Cost: one more search per query for each "
        "--sweep count (6 by default) on the saved index, interleaved with the table's searches; nothing is re-encoded",
    )
    command.add_argument("--sweep", default="10,25,50,100,200,500", help="re-ranked candidate counts of the plot (default: 10,25,50,100,200,500)")
    command.add_argument("--sample", type=int, help="evaluate on N documents: every document judged for the evaluated queries, then random others")
    command.add_argument("--seed", type=int, default=0, help="seed of --sample (default: 0)")
    command.add_argument("--no-progress", action="store_true", help="hide progress bars")
    command.set_defaults(run=evaluate)

    # MUVERA parameter tuning
    command = commands.add_parser("tune", help="find the cheapest FDE parameters and candidates reaching a recall@10 target vs exact MaxSim")
    command.add_argument("model", help="late-interaction model, local folder or hub id")
    command.add_argument("corpus", help="BEIR folder (corpus.jsonl), jsonl file (strings or objects with text) or text file (one per line)")
    command.add_argument("--split", help="BEIR folder: use the queries judged in qrels/SPLIT.tsv")
    command.add_argument("--query-file", help="queries file, jsonl or one per line (default: spans of documents left out of the corpus)")
    command.add_argument("--queries", type=int, help="first N real queries, or N synthetic queries (default: 200, at most a tenth of the corpus)")
    command.add_argument("--sample", type=int, help="tune on N randomly sampled documents")
    command.add_argument("--seed", type=int, default=0, help="seed of the sample and the synthetic queries (default: 0)")
    command.add_argument("--repetitions", default="5,10,20", help="FDE repetitions grid (default: 5,10,20)")
    command.add_argument("--hashes", default="3,4", help="FDE SimHash bits grid (default: 3,4)")
    command.add_argument("--projection", default="8,16", help="FDE inner projection widths grid, 0 for identity (default: 8,16)")
    command.add_argument("--final", default="none", help="FDE Count-Sketch final widths grid, none for off (default: none)")
    command.add_argument("--fill", default="true,false", help="FDE fill of empty document partitions grid (default: true,false)")
    command.add_argument("--no-baseline", dest="baseline", action="store_false", help="leave the encoding defaults out of the grid")
    command.add_argument(
        "--learned",
        default='[{"encoding": "lemur"}]',
        help='learned encodings added to the grid, trained on the corpus, as a JSON list (default: [{"encoding": "lemur"}], "" for none)',
    )
    command.add_argument("--encoder", default="colbert", help="registered late-interaction encoder (default: colbert)")
    command.add_argument("--encoding", default="muvera", help="registered encoding of the FDE grid (default: muvera)")
    command.add_argument("--depths", default="10,25,50,100,200,500,1000", help="candidate depths (default: 10,25,50,100,200,500,1000)")
    command.add_argument("--target", type=float, default=0.95, help="recall@10 vs exact MaxSim to reach (default: 0.95)")
    command.add_argument("--objective", choices=["work", "bytes", "depth"], default="work", help="what cheapest means (default: work per query)")
    command.add_argument(
        "--dtype", choices=["float32", "float16", "int8"], help="token store dtype for the block and --verify (default: index default)"
    )
    command.add_argument("--verify", action="store_true", help="build a txtai index with the recommended block and measure its recall@10")
    command.add_argument("--batchsize", type=int, default=32, help="encoding batch size (default: 32)")
    command.add_argument("--cpu", action="store_true", help="run on the CPU even when an accelerator is available")
    command.add_argument("--json", help="write every figure to this JSON file")
    command.add_argument("--no-progress", action="store_true", help="hide progress bars")
    command.set_defaults(run=tune)

    # LEMUR training
    command = commands.add_parser("fit", help="train a LEMUR learned candidate encoding on a corpus (txtai LEMUR artifact)")
    command.add_argument("model", help="late-interaction model, local folder or hub id")
    command.add_argument("corpus", help="BEIR folder (corpus.jsonl), jsonl file (strings or objects with text) or text file (one per line)")
    command.add_argument("--output", required=True, help="artifact folder to write")
    command.add_argument("--lemur", help='lemur settings as JSON, e.g. \'{"dimensions": 1024, "epochs": 20}\'')
    command.add_argument("--batchsize", type=int, default=32, help="encoding batch size (default: 32)")
    command.add_argument("--cpu", action="store_true", help="run on the CPU even when an accelerator is available")
    command.add_argument("--no-progress", action="store_true", help="hide progress bars")
    command.set_defaults(run=fit)

    return main


def main(argv=None):
    """
    Runs the command line.

    Args:
        argv: arguments, defaults to sys.argv

    Returns:
        exit code
    """

    # pylint: disable=C0415
    from ..errors import ConfigurationError
    from ..core.hub import HubError

    args = parser().parse_args(argv if argv is not None else sys.argv[1:])

    # One-line errors, like argparse
    try:
        return args.run(args)
    except (ConfigurationError, HubError) as error:
        print(f"txtai-muvera {args.command}: error: {error}", file=sys.stderr)
        return 2
