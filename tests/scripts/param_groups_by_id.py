"""Parameter groups built by `id`, the fine-tuning recipe.

Scripts that fine-tune a network give its new head another learning rate by taking
the ids of the head's parameters, letting the parameters go, and filtering the
model's parameters on those ids; others key a dict by `id(module)`. The ids must be
those of the same objects for as long as the model holds them, as in Python.
"""

import torch
from torch import nn, optim

torch.manual_seed(0)
torch.set_num_threads(1)

model = nn.Sequential()
model.add_module("features", nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16)))
model.add_module("fc", nn.Linear(16, 3))

ignored_params = list(map(id, model.fc.parameters()))
base_params = filter(lambda p: id(p) not in ignored_params, model.parameters())
optimizer = optim.SGD(
    [{"params": base_params}, {"params": model.fc.parameters(), "lr": 0.1}], lr=0.01, momentum=0.9
)
print("groups:", [(len(g["params"]), g["lr"]) for g in optimizer.param_groups])

names = {id(m): name for name, m in model.named_modules()}
print("by id:", names.get(id(model.fc)), names.get(id(model.features)))
print("features' ids:", [id(p) in ignored_params for p in model.features.parameters()])

x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
for step in range(4):
    loss = nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(step, round(loss.item(), 5))

# A new head: its parameters are others, with other ids.
model.fc = nn.Linear(16, 5)
print("new head's:", [id(p) in ignored_params for p in model.fc.parameters()])
frozen = {id(p) for p in model.features.parameters()}
head = [p for p in model.parameters() if id(p) not in frozen]
print("head:", [tuple(p.shape) for p in head])
