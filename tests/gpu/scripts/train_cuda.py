# A small classifier trained on the GPU, written the usual way: the model, the data and
# every step on "cuda", a loss read every few steps, an evaluation under no_grad, a
# checkpoint saved and loaded back. Deterministic: seeded, data drawn on the CPU.
import torch
from torch import nn

torch.manual_seed(0)
device = torch.device("cuda")
print("cuda available:", torch.cuda.is_available(), "devices >= 1:", torch.cuda.device_count() >= 1)

x = torch.randn(512, 32)
y = (x[:, :4].sum(dim=1) > 0).long()
x, y = x.to(device), y.to(device)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, inp):
        return self.body(inp)


model = Net().to(device)
print("parameters on cuda:", all(p.is_cuda for p in model.parameters()))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(60):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    if step % 20 == 19:
        print(f"step {step + 1} loss {loss.item():.3f}")


@torch.no_grad()
def accuracy(m):
    return (m(x).argmax(dim=1) == y).float().mean().item()


print(f"accuracy {accuracy(model):.2f}")
torch.save(model.state_dict(), "net.pt")
again = Net().to(device)
again.load_state_dict(torch.load("net.pt", map_location=device))
print("reloaded same:", torch.equal(again(x), model(x)))
print("allocated > 0:", torch.cuda.memory_allocated() > 0)
torch.cuda.synchronize()
