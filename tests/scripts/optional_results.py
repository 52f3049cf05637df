"""Calls that return None sometimes and an object other times (``dict.get`` on a
remote dict), and None-returning calls whose value the script does use.

The client pipelines a call predicted to return None only where the script
drops its value (``opt.step()`` as a statement): a pipelined None is handed to
the script at once, so anywhere else it would be a guess. A site that returned
None one time and an object another is never pipelined again.
"""

import torch

torch.manual_seed(0)
torch.set_num_threads(1)

model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
state = model.state_dict()

# Misses first (None, learned and then predicted), then hits, then misses again.
for key in ["a", "b", "c", "d", "e", "0.weight", "0.bias", "2.weight", "f", "2.bias", "g"]:
    v = state.get(key)
    print(f"get({key!r}): {'None' if v is None else tuple(v.shape)}")

# The same, with the result used inside an expression rather than stored.
keys = ["x", "y", "z", "w", "0.bias", "q"]
print("present:", [state.get(k) is not None for k in keys])

# None-returning calls as statements (pipelined), then the same call's value used.
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(5, 3)
for step in range(6):
    opt.zero_grad()
    loss = model(x).pow(2).mean()
    loss.backward()
    opt.step()
    if step == 4:
        returned = opt.step()
        print(f"step() returned {returned!r}")
    print(f"step {step}: loss {loss.item():.6f}")
