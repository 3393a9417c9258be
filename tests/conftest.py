"""
Shared test fixtures: tiny random ColBERT checkpoints and the shared data folder.
"""

import sys

from pathlib import Path

import pytest

# Test helper modules (models, helpers) import by name under --import-mode=importlib
TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

# pylint: disable=C0413
from models import build_pylate_model, build_stanford_model


@pytest.fixture(scope="session")
def pylate_model(tmp_path_factory):
    """
    Tiny random PyLate-format checkpoint folder (token width 16).
    """

    return build_pylate_model(tmp_path_factory.mktemp("pylate"))


@pytest.fixture(scope="session")
def stanford_model(tmp_path_factory):
    """
    Tiny random Stanford-format checkpoint folder (token width 16).
    """

    return build_stanford_model(tmp_path_factory.mktemp("stanford"))


@pytest.fixture(scope="session")
def shared():
    """
    Shared data and model folder beside the checkout (../shared), skips when absent.
    """

    path = Path(__file__).resolve().parents[2] / "shared"
    if not path.is_dir():
        pytest.skip(f"shared folder not found at {path}")

    return path
