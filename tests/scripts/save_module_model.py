"""torch.save of a whole model whose class lives in the script's own module
(helpers_rnn), then torch.load of it, as the word-language-model example does.

tether-test: creates=rnn.pt
"""

import torch
from helpers_rnn import RNNModel

torch.manual_seed(4)
model = RNNModel(10, 6)
inp = torch.zeros(3, 1, dtype=torch.long)
before = model(inp)
with open("rnn.pt", "wb") as f:
    torch.save(model, f)
with open("rnn.pt", "rb") as f:
    loaded = torch.load(f, weights_only=False)
print(f"loaded {type(loaded).__name__} from {type(loaded).__module__}")
print(f"same output: {torch.equal(before, loaded(inp))}")
print(f"isinstance: {isinstance(loaded, RNNModel)}")
print(f"parameters: {sum(p.numel() for p in loaded.parameters())}")
print(f"state keys: {sorted(loaded.state_dict())[:3]}")
