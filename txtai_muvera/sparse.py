"""
Sparse module

Importing this module lets txtai's sparse shortcut take a late-interaction model:

    import txtai_muvera.sparse
    embeddings = txtai.Embeddings(sparse="neuml/colbert-muvera-micro", content=True)

It hooks one txtai constructor, txtai.scoring.sparse.Sparse.__init__: when the sparse model is a late-interaction model
(detected with txtai's own PoolingFactory) and no vector method is set, the scoring config gets
vectormethod: txtai_muvera.LateVectors and backend: txtai_muvera.Muvera. Those keys are saved with the index, so a
saved index loads later without this import. The explicit config needs no import at all:

    txtai.Embeddings(sparse={"path": MODEL, "vectormethod": "txtai_muvera.LateVectors", "backend": "txtai_muvera.Muvera"}, content=True)

It also watches the dense slot, txtai.vectors.VectorsFactory.create: a late-interaction model given as path without a
method gets txtai's own late-interaction index, and a warning names the txtai-muvera settings.
"""

import functools
import inspect
import logging
import os

from txtai.models import PoolingFactory
from txtai.scoring.sparse import Sparse
from txtai.vectors import VectorsFactory
from txtai.version import __version__ as TXTAI

from .core import hub

# txtai major versions tested
SUPPORTED = (9,)

VECTORMETHOD, BACKEND = "txtai_muvera.LateVectors", "txtai_muvera.Muvera"


def enable():
    """
    Installs the hook, once. Raises an ImportError when the installed txtai is not one this hook knows.
    """

    # Install once
    if getattr(Sparse.__init__, "txtaimuvera", False):
        return

    # Fail on unknown txtai
    major = int(TXTAI.split(".", maxsplit=1)[0])
    parameters = list(inspect.signature(Sparse.__init__).parameters)
    if major not in SUPPORTED or parameters[:3] != ["self", "config", "models"]:
        raise ImportError(
            f"txtai_muvera.sparse supports txtai {SUPPORTED} with Sparse.__init__(self, config, models), found txtai {TXTAI} "
            f"with Sparse.__init__{tuple(parameters)}: use the explicit config sparse={{path, vectormethod: {VECTORMETHOD}, backend: {BACKEND}}}"
        )

    original = Sparse.__init__

    @functools.wraps(original)
    # Sparse.__init__ defaults
    def init(self, config=None, models=None, *args, **kwargs):  # pylint: disable=W1113
        if config is not None:
            uselatevectors(config)
        original(self, config, models, *args, **kwargs)

    init.txtaimuvera = True
    Sparse.__init__ = init

    # Warn on dense slot
    create = VectorsFactory.create

    @functools.wraps(create)
    def dense(config, *args, **kwargs):
        if isinstance(config, dict):
            warn(config)
        return create(config, *args, **kwargs)

    VectorsFactory.create = staticmethod(dense)


def warn(config):
    """
    Warns when a dense config names a late-interaction model without a vector method: txtai then builds its own
    late-interaction index, not txtai-muvera's.

    Args:
        config: embeddings config
    """

    path = config.get("path")
    if not isinstance(path, str) or config.get("method") or not (os.path.isdir(path) or hub.reachable()[0]):
        return

    if PoolingFactory.method(path) == "latepooling":
        logging.getLogger(__name__).warning(
            "%s is a late-interaction model and no method is set, so txtai builds its own late-interaction index: "
            "for txtai-muvera set method: %s and backend: %s",
            path,
            VECTORMETHOD,
            BACKEND,
        )


def uselatevectors(config):
    """
    Adds the txtai-muvera vector method and backend to a sparse scoring config that names a late-interaction model.

    Args:
        config: sparse scoring config, changed in place
    """

    path = config.get("path")
    if isinstance(path, str) and not config.get("vectormethod"):
        if PoolingFactory.method(path) == "latepooling":
            config["vectormethod"] = VECTORMETHOD
            config.setdefault("backend", BACKEND)


enable()
