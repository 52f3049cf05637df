"""Python's `random`, seeded by the script, used inside forward(): the numbers
are the script's generator's, wherever forward runs."""

import random

import torch
import torch.nn as nn

random.seed(1234)
torch.manual_seed(0)


class Jitter(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        scale = random.random()
        pick = random.choice([1, 2, 3])
        return self.fc(x) * scale * pick, scale, pick


m = Jitter()
for step in range(3):
    out, scale, pick = m(torch.ones(1, 2))
    print(f"step {step}: scale {scale:.6f} pick {pick} out {out.sum().item():.4f}")
print(f"script's next random: {random.random():.6f}")
random.seed(99)
out, scale, pick = m(torch.ones(1, 2))
print(f"after reseeding: scale {scale:.6f} pick {pick}")
