"""
Progress module
"""

import logging
import sys
import time

from tqdm.auto import tqdm

logger = logging.getLogger("txtai_muvera")

# Units per log line
EVERY = 1000


def interactive():
    """
    Checks whether a progress bar can be seen: a terminal on stderr or a Jupyter kernel.

    Returns:
        True for a terminal or a notebook
    """

    shell = sys.modules.get("IPython")
    if shell and "ipykernel" in sys.modules:
        ipython = getattr(shell, "get_ipython", lambda: None)()
        if ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell":
            return True

    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progressbar(desc, unit="docs", enabled=None, every=None):
    """
    Creates the progress display of a long step.

    Args:
        desc: step name
        unit: unit of the counts
        enabled: None shows a bar on a terminal or in a notebook and a log line every `every` units elsewhere, True
                 always shows a bar, False shows nothing
        every: units between two log lines, defaults to EVERY

    Returns:
        tqdm-like object with update and close, usable as a context manager
    """

    if enabled is False:
        return tqdm(disable=True)
    if enabled or interactive():
        return tqdm(desc=desc, unit=unit)

    return LogProgress(desc, unit, every or EVERY)


class LogProgress:
    """
    Progress as log lines, for output that is not a terminal (logs, files, CI): one line every `every` units and a last
    line when at least one was written. Goes to the txtai_muvera logger at INFO when logging is configured, else to
    stderr.
    """

    def __init__(self, desc, unit, every):
        self.desc, self.unit, self.every = desc, unit, every
        self.n, self.next, self.start, self.lines, self.last = 0, every, time.perf_counter(), 0, 0

    def update(self, n=1):
        """
        Counts finished units.

        Args:
            n: number of units
        """

        self.n += n
        if self.n >= self.next:
            self.write()
            self.next = (self.n // self.every + 1) * self.every

    def close(self):
        """
        Writes the last line when the step was long enough to log.
        """

        if self.lines and self.n != self.last:
            self.write()

    def write(self):
        """
        Writes one progress line.
        """

        seconds = time.perf_counter() - self.start
        line = f"{self.desc}: {self.n:,} {self.unit} in {seconds:.0f}s ({self.n / seconds if seconds else 0:.1f} {self.unit}/s)"
        if logging.getLogger().hasHandlers() or logger.handlers:
            logger.info(line)
        else:
            print(line, file=sys.stderr, flush=True)

        self.lines, self.last = self.lines + 1, self.n

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()
