"""The same remote object read twice is the same object to the script.

Fine-tuning scripts build parameter groups by identity, look parameters up in dicts
and sets, and compare modules with `is`. While the script holds an object, each read
of `model.fc.weight` or each pass over `model.parameters()` must give that same
object, however often it lets others go and reads them again.
"""

import torch

torch.manual_seed(0)
torch.set_num_threads(1)

model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
head = model[2]
w = head.weight
print("same read twice:", head.weight is w, id(head.weight) == id(w), head.bias is head.bias)

# A lower learning rate for all but the head, the head's parameters held meanwhile.
head_params = list(head.parameters())
base = [p for p in model.parameters() if all(p is not h for h in head_params)]
print("groups:", len(base), len(head_params), id(head_params[0]) == id(head.weight))
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

first = model[0]
kept = first.weight
for i in range(200):  # let other proxies go and read the objects again, over and over
    assert first.weight is kept and first.bias is first.bias
    if i % 50 == 0:
        print(i, round(first.weight.sum().item(), 6), round(first.bias.sum().item(), 6))
