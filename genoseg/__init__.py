"""genoseg: genome segmentation with a neural encoder and an exact semi-Markov CRF."""

__version__ = "0.1.0"
