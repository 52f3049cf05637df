"""The same remote object read twice is the same object to the script.

Fine-tuning scripts build parameter groups by identity (`id(p) not in ignored`),
look parameters up in dicts and sets, and compare modules with `is`. Each read of
`model.fc.weight` or each pass over `model.parameters()` must give the objects the
script already holds, however often the script lets them go and reads them again.
"""

import torch

torch.manual_seed(0)
torch.set_num_threads(1)

model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
head = model[2]
w = head.weight
print("same read twice:", head.weight is w, id(head.weight) == id(w), head.bias is head.bias)

# The classic fine-tuning recipe: a lower learning rate for all but the head.
ignored = list(map(id, head.parameters()))
base = [p for p in model.parameters() if id(p) not in ignored]
print("groups:", len(base), len(ignored))
opt = torch.optim.SGD([{"params": base}, {"params": head.parameters(), "lr": 0.1}], lr=0.01)
print("lrs:", [g["lr"] for g in opt.param_groups])

lookup = {p: name for name, p in model.named_parameters()}
print("dict by parameter:", lookup.get(head.weight), lookup.get(model[0].bias))
print(
    "among the parameters:", any(p is w for p in model.parameters()), len(set(model.parameters()))
)
print("modules:", [i for i, m in enumerate(model.modules()) if m is head], head in model)

x = torch.randn(16, 4)
for step in range(3):
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    print(step, round(loss.item(), 6), head.weight is w)

seen = set()
for i in range(200):  # let the proxy go and read the object again, over and over
    seen.add(id(model[0].weight))
    if i % 50 == 0:
        print(i, round(model[0].weight.sum().item(), 6))
print("one object:", len(seen) == 1 or "weight" not in dir(model[0]))
