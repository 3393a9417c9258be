"""
Report module
"""

from pathlib import Path

from .metrics import CUTOFF, DEPTH

# Mode keys and table labels
MODES = {"exact": "Exact MaxSim (whole corpus)", "rerank": "MUVERA + re-rank top {candidates}", "muvera": "MUVERA only"}


def evaluationtable(results):
    """
    Formats results as markdown: a row per mode and pipeline, then index figures and ratios.

    Args:
        results: evaluation results

    Returns:
        markdown string
    """

    dataset, settings = results["dataset"], results["settings"]
    candidates = settings["candidates"]
    lines = [
        f"Dataset: {dataset['path']} ({dataset['split']}), {dataset['documents']:,} documents, {dataset['queries']:,} queries"
        f"{samplenote(dataset.get('sample'))}. Model: {results['model']}.",
        encodingnote(settings),
        "",
        f"| Pipeline | Mode | nDCG@{CUTOFF} | Recall@{DEPTH} | MRR@{CUTOFF} | Exact top {CUTOFF} recall | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]

    # One row per mode and pipeline
    pipelines = [("txtai-muvera", results["modes"])]
    if "txtai" in results:
        pipelines.append((f"txtai {results['txtai']['version']}", results["txtai"]["modes"]))

    notes = []
    for name, modes in pipelines:
        for mode, label in MODES.items():
            if mode not in modes:
                continue

            row = modes[mode]
            agree = f"{row['exact@10']:.4f}" if "exact@10" in row else ""
            latency = ("batched", "batched") if row.get("batched") else (f"{row['p50_ms']:.1f}", f"{row['p95_ms']:.1f}")
            if "latency_queries" in row:
                latency = tuple(f"{x}*" for x in latency)
                notes.append(
                    f"\\* txtai Reranker latency measured on the first {row['latency_queries']} queries (it encodes every candidate text per query)."
                )

            lines.append(
                f"| {name} | {label.format(candidates=candidates)} | {row[f'ndcg@{CUTOFF}']:.4f} | {row[f'recall@{DEPTH}']:.4f} | "
                f"{row[f'mrr@{CUTOFF}']:.4f} | {agree} | {latency[0]} | {latency[1]} |"
            )

    lines.extend(["", *notes[:1]] if notes else [])

    # Learned vs txtai's LemurTrainer
    if "lemur" in results:
        lines.extend(learnedrows(results))

    # Index figures
    lines.extend(
        ["", "| Pipeline | Index seconds | Documents/s | Bytes/document (tokens + FDE) | Load average (start, end) |", "|---|---|---|---|---|"]
    )
    for name, index in [("txtai-muvera", results["index"])] + ([(pipelines[1][0], results["txtai"]["index"])] if "txtai" in results else []):
        stored = index["bytes_per_document"]
        breakdown = f"{stored['tokens']:,.0f} + {stored['fde']:,.0f}" if "tokens" in stored else "FDE only"
        breakdown = f"{stored['total']:,.0f} ({breakdown})"
        load = ", ".join(f"{x:.1f}" for x in index["loadavg"] if x is not None) or "n/a"
        lines.append(f"| {name} | {index['seconds']:.1f} | {index['documents_per_second']:.1f} | {breakdown} | {load} |")

    # Ratios
    if "ratios" in results:
        ratio = results["ratios"]
        lines.append("")
        if "rerank_speedup_p50" in ratio:
            subset = results["txtai"]["modes"]["rerank"]
            lines.append(
                f"MUVERA + re-rank latency, same {subset['latency_queries']} queries interleaved: "
                f"txtai-muvera p50 {subset['ours_same_queries']['p50_ms']:.1f} ms vs "
                f"txtai Reranker p50 {subset['p50_ms']:.1f} ms: {ratio['rerank_speedup_p50']:.1f}x faster (p95 {ratio['rerank_speedup_p95']:.1f}x)."
            )
        if "muvera_speedup_p50" in ratio:
            lines.append(f"MUVERA only latency, same queries interleaved: txtai p50 / txtai-muvera p50 = {ratio['muvera_speedup_p50']:.2f}x.")
        lines.append(f"Indexing throughput: txtai-muvera / txtai documents per second = {ratio['documents_per_second']:.2f}x.")

    return "\n".join(lines)


def encodingnote(settings):
    """
    Describes the candidate encoding: the FDE's parameters, or a registered encoding's name and width.

    Args:
        settings: results settings

    Returns:
        string
    """

    fde, encoding = settings.get("fde", {}), settings["muvera"].get("encoding", "muvera")
    if encoding != "muvera":
        return f"Encoding: {encoding}, {fde.get('dimensions', 0):,} dimensions; token store {settings['dtype']}."

    return (
        f"FDE: {fde.get('repetitions')} repetitions x 2^{fde.get('hashes')} partitions x {fde.get('projection') or 'identity'} "
        f"{fde.get('projector')} projection"
        f"{' -> ' + str(fde['final']) if fde.get('final') else ''} = {fde.get('dimensions', 0):,} dimensions, normalize {fde.get('normalize')}, "
        f"fill {fde.get('fill')}; "
        f"token store {settings['dtype']}."
    )


def learnedrows(results):
    """
    Formats our learned encoding and txtai's LemurTrainer side by side.

    Args:
        results: evaluation results with lemur rows

    Returns:
        list of markdown lines
    """

    modes, learned = results["modes"], results.get("learned", {})
    lines = [
        "",
        f"| Learned candidates, top {DEPTH} re-ranked | Dimensions | nDCG@{CUTOFF} re-ranked | nDCG@{CUTOFF} candidates only | "
        f"Exact top {CUTOFF} found | Training seconds |",
        "|---|---|---|---|---|---|",
        f"| txtai-muvera ({results['settings']['muvera'].get('encoding')}) | {results['settings']['fde'].get('dimensions')} | "
        f"{modes['rerank'][f'ndcg@{CUTOFF}']:.4f} | {modes['muvera'][f'ndcg@{CUTOFF}']:.4f} | {modes['rerank']['exact@10']:.4f} | "
        f"{learned.get('seconds', float('nan')):.1f} (wall) |",
    ]
    for row in results["lemur"]:
        recommended = f", {row['training_cpu_s_recommended']:,.0f} at 100 epochs (extrapolated)" if "training_cpu_s_recommended" in row else ""
        lines.append(
            f"| {row['pipeline']} | {row['dimensions']} | {row['rerank'][f'ndcg@{CUTOFF}']:.4f} | {row['candidates'][f'ndcg@{CUTOFF}']:.4f} | "
            f"{row['exact@10']:.4f} | {row['training_cpu_s']:.1f} (CPU){recommended} |"
        )

    return lines


def samplenote(sample):
    """
    Describes a corpus sample for the table.

    Args:
        sample: sample dict of the results, or None

    Returns:
        text
    """

    return f" (sample of {sample['size']:,}: every one of the {sample['judged']:,} judged documents kept, seed {sample['seed']})" if sample else ""


def sweepplot(results, path):
    """
    Plots nDCG@10 and query latency against the number of re-ranked candidates.

    Args:
        results: evaluation results with a sweep
        path: output image file
    """

    plt = pyplot()

    rows = results["sweep"]
    candidates = [row["candidates"] for row in rows]

    figure, left = plt.subplots(figsize=(7, 4.5))
    left.plot(candidates, [row[f"ndcg@{CUTOFF}"] for row in rows], "o-", color="tab:blue", label=f"nDCG@{CUTOFF}")
    left.axhline(results["modes"]["exact"][f"ndcg@{CUTOFF}"], color="tab:blue", linestyle=":", label=f"exact MaxSim nDCG@{CUTOFF}")
    left.set_xscale("log")
    left.set_xticks(candidates)
    left.set_xticklabels([str(x) for x in candidates])
    left.set_xlabel("re-ranked MUVERA candidates")
    left.set_ylabel(f"nDCG@{CUTOFF}", color="tab:blue")

    # Latency on a twin axis
    right = left.twinx()
    right.plot(candidates, [row["p50_ms"] for row in rows], "s--", color="tab:red", label="p50 latency")
    right.plot(candidates, [row["p95_ms"] for row in rows], "^:", color="tab:red", alpha=0.5, label="p95 latency")
    right.set_ylabel("query latency (ms)", color="tab:red")
    right.set_ylim(bottom=0)

    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize=8)

    dataset = results["dataset"]
    left.set_title(f"{Path(dataset['path']).name} ({dataset['split']}, {dataset['queries']} queries): MUVERA + exact MaxSim re-rank")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def pyplot():
    """
    Imports matplotlib's pyplot with the Agg backend (no display needed), an optional dependency.

    Returns:
        matplotlib.pyplot module
    """

    try:
        # pylint: disable=C0415
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError('plots need matplotlib: pip install "txtai-muvera[evaluate]"') from e

    return plt


def tuningtable(results):
    """
    Formats tuning results as text: the grid, the Pareto frontier, the recommended block and its verification.

    Args:
        results: tuning results

    Returns:
        string
    """

    corpus, queries, depths = results["corpus"], results["queries"], results["depths"]
    lines = [
        f"Corpus: {corpus['path']}, {corpus['documents']:,} documents ({corpus['tokens_per_document']:.0f} tokens each). "
        f"Queries: {queries['count']:,} ({queries['kind']}). Model: {results['model']}.",
        f"Recall@{CUTOFF}: fraction of the exact MaxSim top {CUTOFF} among the top-N FDE candidates (= recall@{CUTOFF} after re-ranking them).",
        "",
        "| encoding (FDE: reps x partitions x proj -> final = dims, fill) | bytes/doc | training s | seconds | "
        + " | ".join(f"N={depth}" for depth in depths)
        + " |",
        "|---|---|---|---|" + "---|" * len(depths),
    ]

    # Grid
    for row in results["grid"]:
        recalls = " | ".join(f"{row['recall'][depth]:.3f}" for depth in depths)
        training = f"{row['training']:.1f}" if row.get("training") else "-"
        lines.append(f"| {encodinglabel(row['params'], row['dimensions'])} | {row['bytes']:,} | {training} | {row['seconds']:.1f} | {recalls} |")

    # Pareto frontier
    lines.extend(
        [
            "",
            f"Pareto frontier (candidate bytes per document and candidates N against recall@{CUTOFF}):",
            "",
            "| candidates N | encoding | bytes/doc | recall@10 | est. Mops/query |",
            "|---|---|---|---|---|",
        ]
    )
    for point in results["frontier"]:
        lines.append(
            f"| {point['depth']} | {encodinglabel(point['params'], point['dimensions'])} | {point['bytes']:,} | {point['recall']:.3f} "
            f"| {point['work'] / 1e6:.0f} |"
        )

    # Recommendation
    lines.append("")
    best = results["recommended"]
    if best:
        lines.append(
            f"Recommended (cheapest by {results['objective']} reaching recall@{CUTOFF} >= {results['target']}): "
            f"recall@{CUTOFF} {best['recall']:.4f} with {best['depth']} candidates, {best['bytes']:,} FDE bytes per document."
        )
        lines.extend(["", best["yaml"]])
    else:
        top = max(results["frontier"], key=lambda point: point["recall"])
        lines.append(
            f"No configuration reaches recall@{CUTOFF} >= {results['target']}: the best is {top['recall']:.4f} "
            f"({encodinglabel(top['params'])}, {top['depth']} candidates). Add deeper --depths or larger configurations."
        )

    # Verification
    if "verify" in results:
        verify = results["verify"]
        lines.extend(
            [
                "",
                f"Verified with a txtai index (txtai_muvera.LateVectors + txtai_muvera.Muvera, this block): recall@{CUTOFF} "
                f"{verify['recall']:.4f} against exact MaxSim over {verify['queries']:,} queries (tuned: {best['recall']:.4f}).",
            ]
        )

    return "\n".join(lines)


def encodinglabel(params, dimensions=None):
    """
    Describes an FDE configuration.

    >>> encodinglabel({"repetitions": 10, "hashes": 4, "projection": 16, "final": 2048, "fill": True})
    '10 x 2^4 x 16 -> 2048, fill'

    Args:
        params: FDE parameters
        dimensions: optional output dimensions

    Returns:
        string
    """

    if "encoding" in params:
        settings = ", ".join(f"{k} {v}" for k, v in params.items() if k != "encoding")
        return f"{params['encoding']}" + (f" ({settings})" if settings else "") + (f" = {dimensions:,}" if dimensions else "")

    text = f"{params['repetitions']} x 2^{params['hashes']} x {params['projection'] or 'id'}"
    text += f" -> {params['final']}" if params.get("final") else ""
    text += f" = {dimensions:,}" if dimensions else ""
    return text + (", fill" if params.get("fill") else "")
