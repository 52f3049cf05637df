import torch.nn as nn


class RNNModel(nn.Module):
    def __init__(self, ntoken, nhid):
        super(RNNModel, self).__init__()
        self.encoder = nn.Embedding(ntoken, nhid)
        self.rnn = nn.GRU(nhid, nhid)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, x):
        out, _ = self.rnn(self.encoder(x))
        return self.decoder(out)
