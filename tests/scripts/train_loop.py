# tether-test: args=--epochs 3 --batch-size 16
"""A small classifier trained the way most tutorials do it.

Covers: a user-defined nn.Module (super().__init__(), submodules, forward with
torch.nn.functional), DataLoader over TensorDataset, an optimizer, an LR scheduler
built from a lambda, model.train()/eval(), torch.no_grad(), .item(), len(batch),
f-string formatting of remote values, isinstance checks, argparse arguments.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=16)
args = parser.parse_args()

torch.manual_seed(0)
torch.set_num_threads(1)


class Net(nn.Module):
    def __init__(self, n_in, n_hidden, n_out):
        super().__init__()
        self.fc1 = nn.Linear(n_in, n_hidden)
        self.fc2 = nn.Linear(n_hidden, n_out)
        self.dropout = nn.Dropout(p=0.1)
        self.register_buffer("scale", torch.tensor(0.5))

    def forward(self, x):
        h = F.relu(self.fc1(x))
        h = self.dropout(h)
        return self.fc2(h) * (1.0 + self.scale)


# Two noisy blobs, linearly separable-ish.
n = 128
x = torch.randn(n, 4)
w_true = torch.tensor([1.5, -2.0, 0.5, 1.0])
y = (x @ w_true + 0.1 * torch.randn(n) > 0).long()
print(f"data: x{tuple(x.shape)} {x.dtype}, y{tuple(y.shape)} {y.dtype}, positives={int(y.sum())}")

train_ds = TensorDataset(x[:96], y[:96])
test_ds = TensorDataset(x[96:], y[96:])
train_loader = DataLoader(train_ds, batch_size=args.batch_size, shuffle=True)
test_loader = DataLoader(test_ds, batch_size=10)
print(f"train batches: {len(train_loader)}, test samples: {len(test_ds)}")

model = Net(4, 16, 2)
print(model)
print(f"isinstance(model, nn.Module) = {isinstance(model, nn.Module)}")
print(f"isinstance(model, Net) = {isinstance(model, Net)}")
print(f"isinstance(x, torch.Tensor) = {isinstance(x, torch.Tensor)}")
n_params = sum(p.numel() for p in model.parameters())
print(f"parameters: {n_params}")
for name, p in model.named_parameters():
    print(f"  {name:12s} {str(tuple(p.shape)):10s} requires_grad={p.requires_grad}")

opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=lambda epoch: 0.8**epoch)
loss_fn = nn.CrossEntropyLoss()


def evaluate(model, loader):
    model.eval()
    correct = 0
    total = 0
    loss_sum = 0.0
    with torch.no_grad():
        for xb, yb in loader:
            logits = model(xb)
            loss_sum += loss_fn(logits, yb).item() * len(xb)
            correct += (logits.argmax(dim=1) == yb).sum().item()
            total += len(yb)
    return loss_sum / total, correct / total


for epoch in range(args.epochs):
    model.train()
    seen = 0
    running = 0.0
    for step, (xb, yb) in enumerate(train_loader):
        opt.zero_grad()
        out = model(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        opt.step()
        running += loss.item() * len(xb)
        seen += len(xb)
        if step % 3 == 0:
            print(f"epoch {epoch} step {step} loss {loss.item():.6f} batch {len(xb)}")
    sched.step()
    val_loss, acc = evaluate(model, test_loader)
    lr = sched.get_last_lr()[0]
    print(
        f"epoch {epoch}: train_loss={running / seen:.6f} val_loss={val_loss:.6f} "
        f"acc={acc:.3f} lr={lr:.5f} seen={seen}"
    )

print(f"fc1 weight norm: {model.fc1.weight.norm():.6f}")
print(f"fc2 bias: {model.fc2.bias}")
print(f"training mode after eval: {model.training}")
with torch.no_grad():
    probe = model(torch.ones(2, 4))
print(f"probe requires_grad: {probe.requires_grad}")
print("probe:", probe)
print("done")
