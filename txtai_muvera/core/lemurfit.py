"""
LEMUR fit module
"""

import logging
import math
import time

import numpy as np
import torch

from tqdm.auto import tqdm

from .lemurfeatures import FeatureNetwork
from .lemurmodel import LemurModel, bfloat16
from .maxsim import chunks, segmax

logger = logging.getLogger(__name__)

# Elements per product chunk
BUDGET = 1 << 25

# Defaults, shared with Lemur
DEFAULTS = {
    "dimensions": 2048,
    "hidden": 512,
    "layers": 1,
    "activation": "gelu",
    "epochs": 30,
    "patience": 4,
    "targets": 1024,
    "learn": 60000,
    "sample": 16384,
    "validation": 0.1,
    "batch": 1024,
    "lr": 3e-3,
    "schedule": "cosine",
    "clip": 0.5,
    "queryscale": 32,
    "center": True,
    "precision": "auto",
    "seed": 42,
}


# pylint: disable=R0913,R0914,R0917
# Training reads top to bottom
def fit(  # pylint: disable=R0915
    tokens,
    offsets,
    dimensions=DEFAULTS["dimensions"],
    hidden=DEFAULTS["hidden"],
    layers=DEFAULTS["layers"],
    activation=DEFAULTS["activation"],
    epochs=DEFAULTS["epochs"],
    patience=DEFAULTS["patience"],
    targets=DEFAULTS["targets"],
    learn=DEFAULTS["learn"],
    sample=DEFAULTS["sample"],
    validation=DEFAULTS["validation"],
    batch=DEFAULTS["batch"],
    lr=DEFAULTS["lr"],
    schedule=DEFAULTS["schedule"],
    clip=DEFAULTS["clip"],
    queryscale=DEFAULTS["queryscale"],
    center=DEFAULTS["center"],
    precision=DEFAULTS["precision"],
    device=None,
    progress=None,
    seed=DEFAULTS["seed"],
    querytokens=None,
):
    """
    Fits a LEMUR encoder on a collection's token vectors.

    A random set of learn tokens is scored against a random set of target documents (single-token MaxSim, standardized);
    the feature network learns to predict these scores through a linear readout, with early stopping on a held-out split
    of the learn tokens. The stored sample (used to encode documents) is drawn from the learn tokens.

    Args:
        tokens: flat (tokens x dimension) float token vectors, array or tensor
        offsets: int64 document offsets
        dimensions: output dimensions (features)
        hidden: hidden width of a multi-layer network
        layers: network layers
        activation: feature activation
        epochs: most training epochs, 0 for untrained random features
        patience: epochs without a better held-out loss before training stops, 0 never stops early
        targets: most target documents (readout width)
        learn: most learn tokens
        sample: most tokens stored for document encoding
        validation: fraction of learn tokens held out for early stopping
        batch: training batch size
        lr: Adam learning rate
        schedule: learning rate schedule, "constant" or "cosine" (decays to zero over epochs)
        clip: gradient norm clipping, 0 disables
        queryscale: query feature sum scale
        center: center tokens on the collection mean (stored with the model)
        precision: "auto" (bfloat16 autocast where it is faster), "bfloat16" or "float32"
        device: torch device, defaults to CPU
        progress: progress bar, None shows one on a terminal
        seed: random seed
        querytokens: flat query-side token vectors to learn from (the documents encoded as queries), defaults to the
            documents' own tokens

    Returns:
        (LemurModel, statistics dict)
    """

    checks = {"dimensions": dimensions, "hidden": hidden, "layers": layers, "targets": targets, "learn": learn, "sample": sample, "batch": batch}
    for name, value in checks.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"LEMUR {name} must be an integer >= 1, got {value!r}")
    for name, value in (("epochs", epochs), ("patience", patience)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"LEMUR {name} must be an integer >= 0, got {value!r}")
    if not 0 <= validation < 1:
        raise ValueError(f"LEMUR validation must be a fraction in [0, 1), got {validation!r}")
    # Negated to refuse NaN
    # pylint: disable-next=C0117
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"LEMUR lr must be a number > 0, got {lr!r}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"LEMUR schedule must be 'constant' or 'cosine', got {schedule!r}")
    if precision not in ("auto", "bfloat16", "float32"):
        raise ValueError(f"LEMUR precision must be 'auto', 'bfloat16' or 'float32', got {precision!r}")

    start = time.perf_counter()
    device = torch.device(device) if device else torch.device("cpu")
    tokens = tokens if isinstance(tokens, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(tokens))
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    if tokens.dim() != 2 or not len(lengths) or offsets[-1] != tokens.shape[0]:
        raise ValueError("LEMUR needs a flat token matrix and offsets that end at its number of rows")
    if (lengths > 0).sum() < 2:
        raise ValueError("LEMUR needs at least 2 documents with tokens to train")

    generator = torch.Generator().manual_seed(seed)
    dimension = tokens.shape[1]

    # Center like txtai's LemurTrainer
    mean = sum(tokens[x : x + 65536].double().sum(dim=0) for x in range(0, tokens.shape[0], 65536)) / tokens.shape[0] if center else None
    mean = mean.float() if center else None

    def prepare(rows):
        rows = rows.float()
        return torch.nn.functional.normalize(rows - mean, dim=1) if mean is not None else rows

    # Draw targets and learn tokens
    documents = np.flatnonzero(lengths > 0)
    documents = np.sort(documents[torch.randperm(len(documents), generator=generator)[: min(targets, len(documents))].numpy()])
    pool = (
        tokens
        if querytokens is None
        else (querytokens if isinstance(querytokens, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(querytokens)))
    )
    learned = torch.randperm(pool.shape[0], generator=generator)[: min(learn, pool.shape[0])]
    inputs = prepare(pool[learned]).to(device)

    # Pack target document tokens
    parts = [tokens[offsets[x] : offsets[x + 1]] for x in documents]
    dtokens = prepare(torch.cat(parts)).to(device)
    doffsets = np.concatenate(([0], np.cumsum([len(x) for x in parts])))

    # Standardized MaxSim targets
    # bfloat16 error is far below their spread
    autocast = precision == "bfloat16" or (precision == "auto" and bfloat16(device.type))
    scores = maxima(inputs, dtokens, doffsets, torch.bfloat16 if autocast and epochs else torch.float32)
    average, deviation = scores.mean(), scores.std(unbiased=False)
    if not deviation > torch.finfo(torch.float32).eps:
        raise ValueError("LEMUR targets have zero variance: the documents' tokens are all alike")
    scores = (scores - average) / deviation

    # Hold out tokens for early stopping
    held = int(len(inputs) * validation) if epochs and len(inputs) > 1 else 0
    held = min(held, len(inputs) - 1)
    prepared = time.perf_counter() - start

    # Seed network, keep global RNG
    config = {
        "modeltype": "mlp" if epochs else "elm",
        "inputdim": int(dimension),
        "hiddendim": int(hidden),
        "finalhiddendim": int(dimensions),
        "layers": int(layers),
        "activation": activation,
        "queryscale": queryscale,
        "seed": int(seed),
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = FeatureNetwork(config["modeltype"], dimension, hidden, dimensions, layers, activation, outputdim=len(documents)).to(device)

    statistics = {"documents": len(documents), "learn": len(inputs), "held": held, "prepare": prepared}
    if epochs:
        result = train(
            network, inputs[held:], scores[held:], inputs[:held], scores[:held], epochs, patience, batch, lr, schedule, clip, autocast, progress, seed
        )
        statistics.update(result, precision="bfloat16" if autocast else "float32")
        config["training"] = {
            "selectedepoch": result["epoch"],
            "selectedloss": result["loss"],
            "selectionmetric": "validationloss" if held else "trainingloss",
            "validationsplit": float(validation),
        }

    # Sample for document encoding
    chosen = torch.randperm(len(inputs), generator=generator)[: min(sample, len(inputs))]
    network.outputlayer = None
    model = LemurModel(config, network.cpu(), average, deviation, inputs[chosen].cpu(), mean)

    statistics["seconds"] = time.perf_counter() - start
    logger.info(
        "LEMUR fitted in %.1f s on %d documents x %d learn tokens: %s",
        statistics["seconds"],
        len(documents),
        len(inputs),
        f"held-out loss {statistics['loss']:.4f} at epoch {statistics['epoch']}" if epochs else "random features (epochs=0)",
    )

    return model, statistics


@torch.no_grad()
def maxima(inputs, dtokens, doffsets, dtype=torch.float32):
    """
    Single-token MaxSim of each input token against each document.

    Args:
        inputs: (tokens x dimension) tensor
        dtokens: flat document tokens
        doffsets: int64 numpy offsets
        dtype: product type, float32 or bfloat16

    Returns:
        float32 tensor (tokens x documents)
    """

    inputs, dtokens = inputs.to(dtype), dtokens.to(dtype)
    scores = torch.empty((len(inputs), len(doffsets) - 1), dtype=torch.float32, device=inputs.device)
    for start, end in chunks(doffsets, max(1, BUDGET // len(inputs))):
        scores[:, start:end] = segmax(inputs, dtokens[doffsets[start] : doffsets[end]], doffsets[start : end + 1] - doffsets[start])

    return scores


# pylint: disable=R0913,R0914,R0917
def train(network, inputs, targets, vinputs, vtargets, epochs, patience, batch, lr, schedule, clip, autocast, progress, seed):
    """
    Trains the feature network and readout with Adam on mean squared error, keeping the weights of the best epoch.

    Args:
        network: FeatureNetwork with a readout
        inputs: training tokens
        targets: standardized targets
        vinputs: held-out tokens, may be empty
        vtargets: held-out targets
        epochs: most epochs
        patience: epochs without improvement before stopping, 0 never stops early
        batch: batch size
        lr: learning rate
        schedule: "constant" or "cosine"
        clip: gradient norm clipping, 0 disables
        autocast: run products in bfloat16
        progress: progress bar setting
        seed: random seed

    Returns:
        dict with epoch (selected), loss (selected), epochs (run), train (seconds), history (loss per epoch)
    """

    start = time.perf_counter()
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)

    # Cosine decay over all steps
    steps = epochs * -(-len(inputs) // batch)
    decay = (lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))) if schedule == "cosine" else (lambda step: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
    generator = torch.Generator().manual_seed(seed)
    device = inputs.device.type
    best, state, chosen, stale, run, history = float("inf"), None, 0, 0, 0, []

    with tqdm(total=epochs, desc="LEMUR training", unit="epoch", disable=None if progress is None else not progress) as progressbar:
        for epoch in range(epochs):
            network.train()
            order = torch.randperm(len(inputs), generator=generator).to(inputs.device)
            total, count = 0.0, 0
            for begin in range(0, len(inputs), batch):
                rows = order[begin : begin + batch]
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
                    loss = torch.nn.functional.mse_loss(network(inputs[rows]).float(), targets[rows])
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(network.parameters(), clip)
                optimizer.step()
                scheduler.step()
                total, count = total + loss.item(), count + 1

            # Held-out loss selects the epoch
            metric = total / count
            if len(vinputs):
                network.eval()
                with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
                    metric = (
                        sum(
                            torch.nn.functional.mse_loss(network(vinputs[x : x + 8192]).float(), vtargets[x : x + 8192], reduction="sum").item()
                            for x in range(0, len(vinputs), 8192)
                        )
                        / vtargets.numel()
                    )

            run = epoch + 1
            history.append(round(metric, 5))
            progressbar.update(1)
            progressbar.set_postfix({"held-out loss" if len(vinputs) else "loss": f"{metric:.4f}"})
            if metric < best:
                best, chosen, stale = metric, epoch + 1, 0
                state = {name: value.detach().clone() for name, value in network.state_dict().items()}
            else:
                stale += 1
                if patience and stale >= patience:
                    break

    network.load_state_dict(state)
    network.eval()
    return {"epoch": chosen, "loss": best, "epochs": run, "train": time.perf_counter() - start, "history": history}
