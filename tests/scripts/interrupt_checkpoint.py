# tether-test: creates=interrupted.pt
"""Ctrl-C in the middle of training: the script saves a checkpoint and carries on.

The script presses Ctrl-C itself: at step 20 it sends SIGINT to its whole process
group, as a terminal does (under tether run that group also holds tether's own
processes). KeyboardInterrupt must reach the script's except clause at that
point, the session must stay usable, and torch.save must still write the
user's file.
"""

import itertools
import os
import signal

import torch

torch.manual_seed(17)
torch.set_num_threads(1)

model = torch.nn.Linear(8, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
x, y = torch.randn(64, 8), torch.randn(64, 1)
print("training until interrupted")
steps = 0
try:
    for steps in itertools.count(1):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if steps % 10 == 0:
            print(f"step {steps}: loss {loss.item():.6f}")
        if steps == 20:
            os.killpg(os.getpgrp(), signal.SIGINT)
except KeyboardInterrupt:
    print(f"interrupted at step {steps}")
    torch.save({"step": steps, "model": model.state_dict()}, "interrupted.pt")
    print(f"checkpoint written: {os.path.exists('interrupted.pt')}")

ck = torch.load("interrupted.pt")
print(f"checkpoint step {ck['step']}, weight sum {ck['model']['weight'].sum().item():.6f}")
print(f"session still usable: {torch.arange(5).sum().item()}")
