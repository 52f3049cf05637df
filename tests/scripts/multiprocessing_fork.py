"""Processes started with torch.multiprocessing's default "fork" (A3C, Hogwild).

Each child runs a function of the script on a model whose parameters live in
shared memory, prints, and one of them exits with a status of its own. Under `tether run` the children
are forks of the worker: they must find every name their code reads already
there (they cannot ask the client), and what they print must still come out.
"""

import sys

import torch
import torch.multiprocessing as mp
import torch.nn as nn

STEPS = 3


def make_data(rank):
    g = torch.Generator().manual_seed(rank)
    return torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g)


def train(rank, model, lr):
    torch.manual_seed(rank)
    x, y = make_data(rank)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(STEPS):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    print(f"child {rank}: loss {loss.item():.5f}", flush=True)
    if rank == 2:
        sys.exit(3)  # a child's own exit status reaches the parent


if __name__ == "__main__":
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = nn.Linear(4, 1)
    model.share_memory()
    print("before:", [round(v, 5) for v in model.weight.flatten().tolist()])
    codes = []
    for rank in range(3):
        p = mp.Process(target=train, args=(rank, model, 0.1))
        p.start()
        p.join()
        codes.append(p.exitcode)
    print("exit codes:", codes)
    print("after:", [round(v, 5) for v in model.weight.flatten().tolist()])
    print("bias:", round(model.bias.item(), 5))
