# tether-test: expect-status=3
"""sys.exit(N) after remote work: tether run exits with the script's status.

Also: atexit handlers and a `with` block around remote calls run before exit,
and their prints come out in order.
"""

import atexit
import sys

import torch

torch.manual_seed(13)
torch.set_num_threads(1)

atexit.register(lambda: print(f"atexit: final norm {state['norm']:.4f}"))
state = {}

with torch.no_grad():
    p = torch.randn(8)
    state["norm"] = p.norm().item()
    print(f"inside no_grad: grad enabled = {torch.is_grad_enabled()}")
    print(f"p = {p}")
    print(f"p.requires_grad = {p.requires_grad}, p.dtype = {p.dtype}")
print(f"norm {state['norm']:.4f}; grad enabled = {torch.is_grad_enabled()}")
if state["norm"] > 0:
    print("exiting with status 3")
    sys.exit(3)
print("not reached")
