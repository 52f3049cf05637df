def n_params(self):
    return sum(p.numel() for p in self.parameters())


def install_helpers(cls):
    setattr(cls, "n_params", n_params)
