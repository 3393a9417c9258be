"""
Runs the txtai-muvera command line: python -m txtai_muvera
"""

import sys

from .cli import main

sys.exit(main())
