"""`torch.fx.wrap` at the top level of the script: it reads its caller's frame
(it must be a module's top level) and records that module's globals, which
symbolic tracing patches so the wrapped function stays one graph node. The
traced graph, its code and its results must be what they are locally."""

import torch
import torch.fx

torch.manual_seed(0)


def scaled_sigmoid(x: torch.Tensor) -> torch.Tensor:
    # Data-dependent Python control flow: tracing through it would fail.
    if x.sum() > 0:
        return torch.sigmoid(x) * 2
    return torch.sigmoid(x)


torch.fx.wrap(scaled_sigmoid)
torch.fx.wrap("len")


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x):
        return scaled_sigmoid(self.fc(x)) + len(x)


traced = torch.fx.symbolic_trace(Net())
print([n.op for n in traced.graph.nodes])
print([n.target.__name__ for n in traced.graph.nodes if n.op == "call_function"])
print(traced.code.strip())
x = torch.randn(2, 4)
out = traced(x)
print(out.shape, f"{out.sum().item():.4f}")
print(f"{Net()(x).sum().item():.4f}")
