"""
Command line: txtai-muvera plugins, evaluate and tune.
"""

from .main import main

__all__ = ["main"]
