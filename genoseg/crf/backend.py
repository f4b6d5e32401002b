"""Semi-CRF backend dispatch: the functions the model head and the annotation pipeline call.

The fused Triton kernels (``genoseg_kernels``) plug in here, behind the same names and
signatures as the pure-PyTorch reference (``genoseg.crf.reference``), which is what this module
provides until they land.
"""

from genoseg.crf.reference import (posteriors_and_logz, semicrf_logz, semicrf_posteriors,
                                   semicrf_viterbi)

__all__ = ["semicrf_logz", "semicrf_viterbi", "semicrf_posteriors", "posteriors_and_logz"]
