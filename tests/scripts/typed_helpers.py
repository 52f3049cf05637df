"""An environment class of the script's own typed helper module handed to a model.

Typed code (gymnasium's `Env(Generic[ObsType, ActType])`, a replay buffer
`Generic[T]`) keeps its TypeVars as globals of its module. Remote code that reads
such a class pages the TypeVars in; each must arrive as a TypeVar, once, not as a
reference to the global it is being paged in for. A `NewType` of such a module
pickles as that global too: remote code calls the script's own.
"""

from typing import Generic, TypeVar

import torch
import torch.nn as nn
from helpers_typed import ActType, Env, ObsType, Space, Temperature

torch.manual_seed(0)
torch.set_num_threads(1)
Item = TypeVar("Item")


class Buffer(Generic[Item]):
    def __init__(self):
        self.items: list = []

    def add(self, item):
        self.items.append(item)


class Policy(nn.Module):
    def __init__(self, env: Env):
        super().__init__()
        self.fc = nn.Linear(env.obs_dim(), env.action_space.shape[0])
        self.space = env.observation_space

    def forward(self, x):
        return torch.softmax(self.fc(x) / Temperature(2.0), dim=-1)


class CartLike(Env[torch.Tensor, int]):
    pass


env = CartLike()
print("obs dim:", env.obs_dim(), "space:", env.observation_space)
policy = Policy(env)
print(policy)
print("space kept:", policy.space)
probs = policy(torch.ones(3, 4))
print("probs:", [round(v, 4) for v in probs[0].tolist()])
buffer: Buffer[int] = Buffer()
buffer.add(probs.argmax(dim=-1))
print("buffered:", buffer.items[0].tolist())
print("params:", CartLike.__orig_bases__[0].__args__[1], ObsType.__name__, ActType.__name__)
print("generic:", Space.__parameters__, Env.__parameters__)
