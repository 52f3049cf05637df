"""Requests that nest both ways: remote code imports a module of the script's
package that the script never imported; the client, finding it, runs the
package's import, which calls remote torch while the worker waits."""

import torch
import torch.nn as nn

torch.manual_seed(2)


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        import helpers_nested.scale as scale  # first imported here, in forward

        return self.fc(x) * scale.FACTOR


m = Scaled()
out = m(torch.ones(1, 2))
print(f"out {[round(v, 4) for v in out.flatten().tolist()]}")
out = m(torch.ones(1, 2) * 2)
print(f"again {[round(v, 4) for v in out.flatten().tolist()]}")
import helpers_nested

print(f"the script's package: BASE={helpers_nested.BASE}")
print(f"same module object: {helpers_nested.scale.FACTOR}")
