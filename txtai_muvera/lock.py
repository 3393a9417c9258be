"""
Lock module
"""

import threading

from contextlib import contextmanager


class ReadWriteLock:
    """
    Many readers or one writer. A waiting writer blocks new readers, so a steady stream of searches cannot starve an upsert.
    The writing thread may also read (a write that calls a read method does not deadlock).
    """

    def __init__(self):
        self.condition = threading.Condition(threading.Lock())
        self.readers, self.writer, self.waiting = 0, None, 0

    @contextmanager
    def read(self):
        """
        Holds the lock shared while the block runs.
        """

        me = threading.get_ident()
        with self.condition:
            # The writer already holds the lock exclusively
            reentrant = self.writer == me
            if not reentrant:
                while self.writer is not None or self.waiting:
                    self.condition.wait()
                self.readers += 1

        if reentrant:
            yield
            return

        try:
            yield
        finally:
            with self.condition:
                self.readers -= 1
                if not self.readers:
                    self.condition.notify_all()

    @contextmanager
    def write(self):
        """
        Holds the lock exclusively while the block runs.
        """

        me = threading.get_ident()
        with self.condition:
            # Re-entrant for the writing thread
            reentrant = self.writer == me
            if not reentrant:
                self.waiting += 1
                while self.writer is not None or self.readers:
                    self.condition.wait()
                self.waiting -= 1
                self.writer = me

        if reentrant:
            yield
            return

        try:
            yield
        finally:
            with self.condition:
                self.writer = None
                self.condition.notify_all()
