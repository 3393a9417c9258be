"""
Reservoir module
"""

import random


class Reservoir:
    """
    A uniform random sample of at most size items from a stream of unknown length (reservoir sampling, Algorithm R).

    >>> reservoir = Reservoir(3)
    >>> reservoir.add(range(100))
    >>> len(reservoir.items), reservoir.seen
    (3, 100)
    """

    def __init__(self, size, seed=42):
        """
        Creates an empty reservoir.

        Args:
            size: most items kept
            seed: random seed
        """

        self.size, self.seen, self.items = size, 0, []
        self.random = random.Random(seed)

    def add(self, items):
        """
        Offers items: each item seen so far is kept with the same probability.

        Args:
            items: iterable of items
        """

        for item in items:
            if len(self.items) < self.size:
                self.items.append(item)
            else:
                # Replace w.p. size / (seen + 1)
                position = self.random.randrange(self.seen + 1)
                if position < self.size:
                    self.items[position] = item
            self.seen += 1
