"""genoseg_kernels: fused Triton semi-CRF kernels (imported as ``genoseg_kernels``).

Knows tensors only: no genomes, labels, paths or configs. The kernels are twins of
``genoseg.crf.reference`` (same signatures and semantics) and are being built in the next step of
the plan; until they land, ``genoseg.crf.backend`` uses the reference everywhere.
"""

__all__: list[str] = []
