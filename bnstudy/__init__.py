"""bnstudy: what batch size does to normalization layers, measured."""

__version__ = "0.1.0"
