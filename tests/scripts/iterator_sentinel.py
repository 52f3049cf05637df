"""Remote iterators whose items look like the protocol's old end-of-iteration marker.

Covers: a remote iteration (a DataLoader over an IterableDataset defined here,
so its length is unknown and each item is fetched and checked for the end) that
yields the string "__tether_stop__" in the middle and at the end, through a
for loop, through explicit next() on the remote iterator, and through list();
and a remote generator of strings. Until the end of an iteration was a flag of
the reply, such an item ended the loop early on the remote run.
"""

import torch
from torch.utils.data import DataLoader, IterableDataset

torch.manual_seed(0)
torch.set_num_threads(1)

WORDS = ["alpha", "__tether_stop__", "beta", "", "__tether_stop__"]


class Words(IterableDataset):
    """Yields the words in order, with no length (each item is a round trip)."""

    def __init__(self, words):
        super().__init__()
        self.words = list(words)

    def __iter__(self):
        return iter(self.words)


loader = DataLoader(Words(WORDS), batch_size=None)

seen = []
for i, word in enumerate(loader):
    print(f"for loop item {i}: {word!r}")
    seen.append(word)
print(f"for loop saw {len(seen)} items, all of them: {seen == WORDS}")

it = loader.__iter__()
for i in range(len(WORDS)):
    print(f"next() item {i}: {next(it)!r}")
try:
    next(it)
except StopIteration:
    print("next() past the end raised StopIteration")

print(f"list(): {list(loader)!r}")

# The marker as a tensor-holding structure's key: dict iteration of a module.
table = torch.nn.ModuleDict(
    {"first": torch.nn.Identity(), "__tether_stop__": torch.nn.Linear(2, 2)}
)
names = [name for name in table]
print(f"module dict keys: {names}")
print(f"the marker's module: {type(table['__tether_stop__']).__name__}")

# A remote generator whose items are tuples holding the marker.
pairs = list(table.named_children())
print(f"named children: {[(name, type(m).__name__) for name, m in pairs]}")
total = sum(len(w) for w in loader)
print(f"total length of the words: {total}")
