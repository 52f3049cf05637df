"""Attributes of the script's functions seen through a torch decorator's wrapper.

Marks and registries put attributes on functions (`@pytest.mark.slow` sets
`fn.pytestmark = [Mark(...)]`); `@torch.no_grad()` or `@torch.inference_mode()`
on top copies them onto its wrapper (`functools.wraps`). The script then reads
them back, from the wrapper, as its own list or dict: pytest checks
`isinstance(marks, list)` when it collects a test.
"""

import torch

torch.manual_seed(0)
torch.set_num_threads(1)
TAGS = ["slow", "cpu"]
REGISTRY: dict = {}


def tag(*names):
    def deco(fn):
        fn.pytestmark = TAGS
        fn.meta = {"owner": "me", "names": list(names)}
        fn.version = 3
        REGISTRY[fn.__name__] = fn
        return fn

    return deco


@torch.no_grad()
@tag("fast")
def compute(x):
    return (x * 2).sum()


@torch.inference_mode()
@tag()
def infer(x):
    return x.mean()


print("result:", compute(torch.ones(3)).item(), infer(torch.arange(4.0)).item())
print("marks:", compute.pytestmark, type(compute.pytestmark).__name__)
print("isinstance:", isinstance(compute.pytestmark, list), isinstance(compute.meta, dict))
print("same objects:", compute.pytestmark is TAGS, infer.pytestmark is compute.pytestmark)
print("meta:", compute.meta, compute.version, infer.meta["names"])
compute.pytestmark.append("gpu")  # through the wrapper: the script's own list
print("appended:", TAGS)
print("wrapped:", compute.__wrapped__ is REGISTRY["compute"], compute.__name__, infer.__name__)
print("still no grad:", compute(torch.ones(2, requires_grad=True)).requires_grad)
