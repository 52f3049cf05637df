"""Calls that return tuples of tensors, of the code's arity and of the data's.

`x.split(32)` makes one tensor per piece: the training set's call returns four, the
validation set's one, from the same line of the same helper. `torch.chunk`,
`x.unbind()` and `x.nonzero(as_tuple=True)` do the same by size or dimensions. An
LSTM's `out, (h, c)` and a model's `logits, loss` keep their arity from step to step.
The script must get every tuple whole, as Python would give it.
"""

import torch

torch.manual_seed(0)
torch.set_num_threads(1)

train, val = torch.randn(100, 3), torch.randn(30, 3)


def batches(x, size):
    return x.split(size)


for epoch in range(2):
    for name, data in (("train", train), ("val", val)):
        sums = [round(b.sum().item(), 4) for b in batches(data, 32)]
        print(epoch, name, len(sums), sums)

for n in (3, 2, 4):
    print("chunk", n, [tuple(c.shape) for c in torch.chunk(train[:10], n)])
    print("unbind", n, [round(r.sum().item(), 4) for r in train[:n].unbind()])
for x in (torch.tensor([0, 3, 0, 5]), torch.eye(2), torch.ones(1, 1, 2)):
    print("nonzero", [i.tolist() for i in x.nonzero(as_tuple=True)])


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 4, batch_first=True)
        self.head = torch.nn.Linear(4, 1)

    def forward(self, x, y):
        out, (h, c) = self.lstm(x)
        logits = self.head(out[:, -1])
        return logits, torch.nn.functional.mse_loss(logits, y)


model = Model()
lstm = torch.nn.LSTM(3, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(4):
    out, (h, c) = lstm(train[step : step + 5].unsqueeze(1))  # the same arity each step
    logits, loss = model(train[:8].view(2, 4, 3), torch.zeros(2, 1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    print(step, tuple(out.shape), round(h.sum().item(), 4), round(loss.item(), 5))
