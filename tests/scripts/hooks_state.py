"""Remote code that changes the script's own state, and state kept on remote objects.

Covers: the feature-extraction pattern (a forward hook, defined in the script,
stores activations in a global dict that the script reads afterwards), a tensor
gradient hook appending to a list in the script, a collate_fn counting batches
in a global, and plain Python containers kept as attributes of a Module
(`model.history.append(...)`, `model.config[...] = ...`) mutated by the script.
"""

import torch
from torch import nn

torch.manual_seed(14)
torch.set_num_threads(1)


class Probe(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(4, 3)
        self.dec = nn.Linear(3, 2)
        self.history = []
        self.config = {"tag": "v1", "steps": 0}

    def forward(self, x):
        return self.dec(torch.tanh(self.enc(x)))


model = Probe()

# Containers kept on the module, changed by the script.
for step in range(3):
    model.history.append(round(0.5 * step, 2))
    model.config["steps"] += 1
model.config["tag"] = "v2"
print(f"history: {model.history}")
print(f"config: {model.config}")
print(f"len(history): {len(model.history)}, last: {model.history[-1] if model.history else None}")

# Forward hooks that store activations in the script's dict.
activations = {}


def save_to(name):
    def hook(module, inputs, output):
        activations[name] = output.detach()

    return hook


handles = [
    model.enc.register_forward_hook(save_to("enc")),
    model.dec.register_forward_hook(save_to("dec")),
]
out = model(torch.randn(5, 4))
print(f"captured: {sorted(activations)}")
for name in sorted(activations):
    print(
        f"  {name}: shape {tuple(activations[name].shape)} mean {activations[name].mean().item():+.6f}"
    )
for h in handles:
    h.remove()

# A gradient hook appending to a list in the script.
grad_norms = []
x = torch.randn(3, 4, requires_grad=True)
x.register_hook(lambda g: grad_norms.append(round(g.norm().item(), 6)))
model(x).pow(2).sum().backward()
print(f"grad norms seen by the hook: {grad_norms}")

# A collate_fn that counts in a global.
n_batches = 0


def counting_collate(samples):
    global n_batches
    n_batches += 1
    return torch.stack(samples)


loader = torch.utils.data.DataLoader(
    [torch.full((4,), float(i)) for i in range(10)], batch_size=4, collate_fn=counting_collate
)
sizes = [len(b) for b in loader]
print(f"batch sizes {sizes}, collate calls counted by the script: {n_batches}")
