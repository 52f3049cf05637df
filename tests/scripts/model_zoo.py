"""Common architectures, small: a CNN with BatchNorm, an LSTM over padded sequences, a
Transformer encoder with a causal mask.

Covers: Conv2d/BatchNorm2d/MaxPool2d/flatten, running statistics and train()/eval()
differences, nn.Embedding, pad_sequence / pack_padded_sequence and tuple outputs
`out, (h, c)` unpacked by the script, nn.TransformerEncoder with batch_first and a
mask from torch.triu, gradient accumulation, clip_grad_norm_'s return value, and
a StepLR scheduler.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

torch.manual_seed(15)
torch.set_num_threads(1)


class SmallCNN(nn.Module):
    def __init__(self, n_classes=3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 8, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(8 * 2 * 2, n_classes)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.pool(F.relu(self.conv2(x)))
        return self.head(torch.flatten(x, 1))


images = torch.randn(24, 1, 8, 8)
labels = torch.arange(24) % 3
images[labels == 1, :, :4, :] += 1.5
images[labels == 2, :, :, 4:] -= 1.5
cnn = SmallCNN()
opt = torch.optim.Adam(cnn.parameters(), lr=0.02)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
accum = 2
for step in range(10):
    opt.zero_grad()
    for micro in range(accum):
        part = slice(micro * 12, (micro + 1) * 12)
        loss = F.cross_entropy(cnn(images[part]), labels[part]) / accum
        loss.backward()
    norm = nn.utils.clip_grad_norm_(cnn.parameters(), max_norm=5.0)
    opt.step()
    sched.step()
    if step % 3 == 0:
        print(
            f"cnn step {step}: loss {loss.item() * accum:.5f} grad-norm {norm:.4f} lr {sched.get_last_lr()[0]:.4f}"
        )
print(f"bn running_mean: {[round(v, 4) for v in cnn.bn1.running_mean.tolist()]}")
print(f"bn num_batches_tracked: {int(cnn.bn1.num_batches_tracked)}")
cnn.eval()
with torch.no_grad():
    train_mode_out = cnn.train()(images[:2])
    eval_out = cnn.eval()(images[:2])
print(f"train vs eval outputs differ: {not torch.allclose(train_mode_out, eval_out)}")
print(f"cnn accuracy: {(cnn(images).argmax(1) == labels).float().mean().item():.3f}")


class Tagger(nn.Module):
    def __init__(self, vocab=20, dim=8, hidden=6):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 2)

    def forward(self, tokens, lengths):
        packed = pack_padded_sequence(
            self.emb(tokens), lengths, batch_first=True, enforce_sorted=False
        )
        out, (h, c) = self.lstm(packed)
        unpacked, out_lengths = pad_packed_sequence(out, batch_first=True)
        return self.out(h[-1]), unpacked, out_lengths


seqs = [torch.randint(1, 20, (n,)) for n in (5, 3, 7, 2)]
tokens = pad_sequence(seqs, batch_first=True)
lengths = torch.tensor([len(s) for s in seqs])
print(f"padded tokens {tuple(tokens.shape)}, lengths {lengths.tolist()}")
tagger = Tagger()
logits, unpacked, out_lengths = tagger(tokens, lengths)
print(
    f"tagger logits {tuple(logits.shape)}, unpacked {tuple(unpacked.shape)}, lengths {out_lengths.tolist()}"
)
print(f"padding positions are zero: {bool((unpacked[1, 3:] == 0).all())}")
out, (h, c) = tagger.lstm(tagger.emb(tokens))
print(f"plain lstm: out {tuple(out.shape)} h {tuple(h.shape)} c {tuple(c.shape)}")

layer = nn.TransformerEncoderLayer(
    d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True
)
encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
seq = torch.randn(2, 5, 8)
mask = torch.triu(torch.full((5, 5), float("-inf")), diagonal=1)
print("causal mask:")
print(mask)
encoded = encoder(seq, mask=mask)
print(
    f"encoded {tuple(encoded.shape)}, mean {encoded.mean().item():+.5f}, std {encoded.std().item():.5f}"
)
prefix = encoder(seq[:, :3], mask=mask[:3, :3])
print(
    f"causal: first 3 positions unchanged by later ones: {torch.allclose(prefix, encoded[:, :3], atol=1e-5)}"
)
