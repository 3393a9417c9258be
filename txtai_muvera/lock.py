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

    def read(self):
        """
        Holds the lock shared while the block runs.

        Returns:
            context manager
        """

        return self.hold(shared=True)

    def write(self):
        """
        Holds the lock exclusively while the block runs.

        Returns:
            context manager
        """

        return self.hold(shared=False)

    @contextmanager
    def hold(self, shared):
        """
        Holds the lock shared or exclusively while the block runs. Re-entrant for the writing thread.

        Args:
            shared: True for a reader, False for the writer
        """

        me = threading.get_ident()
        with self.condition:
            # Writer thread re-enters
            reentrant = self.writer == me
            if not reentrant and shared:
                while self.writer is not None or self.waiting:
                    self.condition.wait()
                self.readers += 1
            elif not reentrant:
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
                if shared:
                    self.readers -= 1
                else:
                    self.writer = None

                # Wake waiters once free
                if not self.readers:
                    self.condition.notify_all()
