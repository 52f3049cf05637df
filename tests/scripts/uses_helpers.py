"""The script imports its own helper module and package, which live beside it.

Covers: `import helpers_model` / `from helpers_pkg import ...` (client-only code
the worker fetches on demand), a Module subclass defined in the helper and
subclassed again in the script, helper functions passed tensors, and a helper
function used inside the script's own forward (so it runs in the worker).
"""

import helpers_model
import torch
from helpers_model import Tower, l2_penalty, make_data
from helpers_pkg import accuracy, confusion
from helpers_pkg.metrics import per_class_recall

torch.manual_seed(3)
torch.set_num_threads(1)

print(helpers_model.GREETING)
print(f"helpers_model file: {helpers_model.__name__}.py")


class ScaledTower(Tower):
    """Subclass of a helper-defined module, defined in the script."""

    def __init__(self, *args, scale=2.0):
        super().__init__(*args)
        self.scale = scale

    def forward(self, x):
        logits = super().forward(x) * self.scale
        # The helper package runs inside the forward, i.e. in the worker.
        self.last_acc = (
            accuracy(logits, self.current_target) if self.current_target is not None else None
        )
        return logits


x, y = make_data(200, 6, seed=11)
print(f"x {tuple(x.shape)} y {tuple(y.shape)} class balance {y.float().mean().item():.3f}")
model = ScaledTower(6, 3, 2, scale=0.5)
print(f"blocks: {len(model.blocks)}; isinstance Tower: {isinstance(model, Tower)}")
opt = torch.optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.0)

for step in range(60):
    model.current_target = y
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y) + l2_penalty(model, 1e-4)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 10 == 0 or step == 59:
        print(f"step {step:2d} loss {loss.item():.6f} acc(in forward) {model.last_acc.item():.4f}")

model.eval()
model.current_target = None
with torch.no_grad():
    logits = model(x)
print(f"last_acc after eval forward: {model.last_acc}")
print(f"accuracy: {accuracy(logits, y).item():.4f}")
m = confusion(logits, y, 2)
print("confusion:")
print(m)
print("recall per class:", [round(r, 4) for r in per_class_recall(m).tolist()])
