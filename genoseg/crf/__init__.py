"""Semi-Markov CRF: the pure-PyTorch reference (the specification), the model head and the
dispatch between the reference and the Triton kernels."""
