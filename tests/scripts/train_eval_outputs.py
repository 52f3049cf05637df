"""A model that returns other things when training and when evaluating.

Inception-style networks return `(out, aux)` from an auxiliary head while training
and `out` alone in evaluation; fine-tuning scripts unpack accordingly after
`model.train()` and `model.eval()`, often through one helper for both phases, and
sometimes switch two models apart (one trains while the other evaluates).
"""

import torch
from torch import nn

torch.manual_seed(0)
torch.set_num_threads(1)


class AuxNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 2)
        self.aux = nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.body(x))
        if self.training:
            return self.head(h), self.aux(h)
        return self.head(h)


def run(model, x):
    return model(x)


net, other = AuxNet(), AuxNet()
opt = torch.optim.SGD(net.parameters(), lr=0.1)
x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
ce = nn.functional.cross_entropy

for epoch in range(3):
    net.train()
    for _ in range(3):
        out, aux = run(net, x)
        loss = ce(out, y) + 0.4 * ce(aux, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(epoch, "train", round(loss.item(), 4))
    net.eval()
    with torch.no_grad():
        for _ in range(2):
            out = run(net, x)
        print(epoch, "eval", round(ce(out, y).item(), 4), tuple(out.shape))

# Two models in opposite modes, switched one at a time.
other.train()
for step in range(3):
    got_net = run(net, x)
    got_other = run(other, x)
    print(step, type(got_net).__name__, type(got_other).__name__, len(got_other))
    net.train(step % 2 == 0)
    other.train(mode=step % 2 == 1)
out = net(x)
print("last:", type(out).__name__, net.training, other.training)
