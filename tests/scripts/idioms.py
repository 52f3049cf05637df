"""Idioms found in most real training scripts, beyond the tutorial basics.

Covers: everything inside main() behind `if __name__ == "__main__":` (classes and
helpers defined inside a function, closures over local variables), device
selection with torch.cuda.is_available(), model.to(device), model.apply(init_fn)
with isinstance checks in the worker, extra_repr and a @property on a Module,
@torch.no_grad() as a decorator on the script's own function, mutating
optimizer.param_groups, copy.deepcopy of a state_dict to keep the best model,
random_split with a seeded generator, Subset, "%"-formatting and str.format of
tensors, a dataclass config used inside forward, and early stopping on tensors.
"""

import copy
import dataclasses

import torch
from torch import nn, optim
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split


@dataclasses.dataclass
class Config:
    width: int = 12
    lr: float = 0.05
    epochs: int = 6
    clip: float = 3.0


def main():
    torch.manual_seed(11)
    torch.set_num_threads(1)
    cfg = Config()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device: {device}, config: {cfg}")

    class Regressor(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.cfg = cfg
            self.body = nn.Sequential(nn.Linear(3, cfg.width), nn.GELU(), nn.Linear(cfg.width, 1))

        @property
        def n_params(self):
            return sum(p.numel() for p in self.parameters())

        def extra_repr(self):
            return f"width={self.cfg.width}, clip={self.cfg.clip}"

        def forward(self, x):
            return self.body(x).clamp(-self.cfg.clip, self.cfg.clip).squeeze(-1)

    init_calls = []

    def init_weights(m):
        # Runs in the worker for every submodule; closes over nothing remote.
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight, gain=0.8)
            nn.init.zeros_(m.bias)

    model = Regressor(cfg).to(device)
    model.apply(init_weights)
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            init_calls.append(name)
    print(model)
    print(f"n_params via property: {model.n_params}; linear layers: {init_calls}")
    print(f"bias zeroed: {bool((model.body[0].bias == 0).all())}")

    x = torch.randn(120, 3)
    y = (x[:, 0] - 2 * x[:, 1] + x[:, 2] ** 2).clamp(-3, 3)
    full = TensorDataset(x, y)
    train_ds, val_ds = random_split(full, [90, 30], generator=torch.Generator().manual_seed(0))
    print(f"split sizes: {len(train_ds)} / {len(val_ds)}; first val index: {val_ds.indices[0]}")
    train_loader = DataLoader(train_ds, batch_size=30, shuffle=True)

    @torch.no_grad()
    def validate():
        model.eval()
        xs = torch.stack([val_ds[i][0] for i in range(len(val_ds))])
        ys = torch.stack([val_ds[i][1] for i in range(len(val_ds))])
        loss = F.mse_loss(model(xs), ys)
        model.train()
        return loss

    opt = optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.5)
    best_loss = None
    best_state = None
    bad_epochs = 0
    for epoch in range(cfg.epochs):
        if epoch == 3:
            for group in opt.param_groups:
                group["lr"] = group["lr"] * 0.5
        for xb, yb in train_loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.mse_loss(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            opt.step()
        val = validate()
        print(
            "epoch %d val %.5f lr %.4f grad_enabled %s"  # noqa: UP031 (users still write this)
            % (epoch, val, opt.param_groups[0]["lr"], torch.is_grad_enabled())
        )
        if best_loss is None or val < best_loss:
            best_loss = val
            best_state = copy.deepcopy(model.state_dict())
            bad_epochs = 0
        else:
            bad_epochs += 1
        if bad_epochs >= 2:
            print(f"early stop at epoch {epoch}")
            break

    print("best val: {:.5f}".format(best_loss))  # noqa: UP032
    with torch.no_grad():
        model.body[0].weight.fill_(0.0)
    print(f"weights wiped, val now {validate():.5f}")
    model.load_state_dict(best_state)
    print(f"restored best, val {validate():.5f}")
    print(f"best_state is a copy: {best_state['body.0.weight'].abs().sum().item() > 0}")


if __name__ == "__main__":
    main()
