"""Taking models apart and putting them back together, as fine-tuning scripts do.

Covers: indexing, slicing, len, append and item assignment on nn.Sequential,
replacing a layer (`model.head = nn.Linear(...)`), adding and deleting
parameters and buffers from the script, ModuleDict/ParameterList, iterating
modules with `type(m).__name__` and `type(m) == nn.Linear` (the PyTorch
tutorials' init recipe) and isinstance, freezing a backbone, autocast to
bfloat16, @torch.inference_mode(), pprint and logging to stdout of tensors, and
json's error for a tensor.
"""

import json
import logging
import pprint
import sys

import torch
from torch import nn

torch.manual_seed(21)
torch.set_num_threads(1)
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s %(message)s")

seq = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2), nn.Dropout(0.1))
print(f"len {len(seq)}, seq[0] = {seq[0]}, type(seq[1]) = {type(seq[1]).__name__}")
print(f"types by iteration: {[type(m).__name__ for m in seq]}")
print(f"types by index: {[type(seq[i]).__name__ for i in range(len(seq))]}")
print(f"__class__ names: {[m.__class__.__name__ for m in seq]}")
print(f"is Linear: {[isinstance(m, nn.Linear) for m in seq]}")
print(f"type(m) == nn.Linear: {[type(m) == nn.Linear for m in seq]}")  # noqa: E721


def init_weights(m):
    if type(m) == nn.Linear:  # noqa: E721 (as in the PyTorch tutorials)
        nn.init.constant_(m.weight, 0.1)
        nn.init.zeros_(m.bias)


for m in seq.modules():  # the loop runs in the script
    init_weights(m)
print(
    f"weights set by the script's loop: {[round(m.weight.sum().item(), 4) for m in seq if isinstance(m, nn.Linear)]}"
)
print("head slice:")
print(seq[:2])
seq.append(nn.Softmax(dim=-1))
seq[2] = nn.Linear(8, 3)
print(
    f"after append and replace: {[type(m).__name__ for m in seq]}, out_features {seq[2].out_features}"
)
print(f"parameters: {sum(p.numel() for p in seq.parameters())}")
seq.scale = nn.Parameter(torch.ones(1))
seq.register_buffer("step", torch.zeros((), dtype=torch.long))
print(f"named parameters: {[n for n, _ in seq.named_parameters()]}")
print(
    f"buffers: {[n for n, _ in seq.named_buffers()]}, in state_dict: {'step' in seq.state_dict()}"
)
del seq.scale
print(f"after del: hasattr scale {hasattr(seq, 'scale')}, {len(list(seq.parameters()))} tensors")


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.backbone(x))


clf = Classifier()
for p in clf.backbone.parameters():
    p.requires_grad = False
clf.head = nn.Linear(6, 5)  # new task, new head
trainable = [n for n, p in clf.named_parameters() if p.requires_grad]
print(
    f"trainable after freezing and a new head: {trainable}; output {tuple(clf(torch.ones(2, 4)).shape)}"
)

md = nn.ModuleDict({"enc": nn.Linear(1, 1), "id": nn.Identity()})
print(
    f"ModuleDict keys {list(md.keys())}, 'enc' in md: {'enc' in md}, values {[type(v).__name__ for v in md.values()]}"
)
pl = nn.ParameterList([nn.Parameter(torch.ones(2) * i) for i in range(3)])
print(f"ParameterList: {len(pl)} params, total {sum(p.sum().item() for p in pl)}")

with torch.autocast("cpu", dtype=torch.bfloat16):
    low = clf.head(torch.ones(2, 6))
print(f"autocast output dtype: {low.dtype}")


@torch.inference_mode()
def infer(x):
    return clf(x)


y = infer(torch.ones(1, 4))
print(
    f"inference_mode: requires_grad {y.requires_grad}, is_inference {y.is_inference()}, outside: {torch.is_inference_mode_enabled()}"
)
try:
    json.dumps({"t": torch.ones(1)})
except TypeError as e:
    print(f"json: {e}")
pprint.pprint({"w": torch.tensor([1.0, 2.0]), "n": 3})
logging.info("loss %s at step %d", torch.tensor(0.5), 3)
scores = {"a": torch.tensor(0.3), "b": torch.tensor(0.9), "c": torch.tensor(0.1)}
print(f"best: {max(scores, key=scores.get)}; order: {sorted(scores, key=lambda k: scores[k])}")
