class DataCfg:
    """A plain config class of the script's own package, as minGPT's CfgNode."""

    def __init__(self, n, scale):
        self.n = n
        self.scale = scale
