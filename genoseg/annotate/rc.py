"""Test-time reverse-complement averaging of the encoder's scores (``[annotate] rc_average``).

A model trained with ``[train] rc_augment`` has seen every training gene on both strands, so
running the encoder on the reverse complement of a contig, flipping its output back and mapping
its columns to the other strand gives a second estimate of the same per-base scores; the
annotation decodes the mean of the two.

The mapping (``rc_column_map``), with t <-> L - 1 - t for a contig of length L, no other shift:

- class columns: a label and its other-strand twin swap (``exon+`` <-> ``exon-``); labels
  without a strand suffix (``intergenic``) map to themselves.
- site columns of the phase grammar (``genoseg.labels.phase_crf.SITES``): ``start+`` <->
  ``start-``, ``stop+`` <-> ``stop-``, ``donor+`` <-> ``donor-``, ``acceptor+`` <->
  ``acceptor-``. A + site scored on a run's first base (``start_bias``: the A of ATG, the G of
  a GT donor) is, on the reverse complement, the - site scored on the mirrored run's last base
  (``end_bias``: the T of CAT, the C of an AC donor), which is the same base; and the other way
  round (the last base of a stop codon or of an AG acceptor). ``PhaseGrammar.site_channels``
  puts every + start-bias site at a - end-bias site and back, so the columns swap like the
  labels. ``tests/annotate/test_rc.py`` proves it on the CRF: with strand-neutral head scores,
  the reverse-complemented sequence with mapped scores has the same log Z, mirrored posteriors
  and the mirrored Viterbi gene.

Unsupported (a one-line ``InputError``): stranded BAM coverage (its + and - channels would
have to swap as well) and schemes with a stranded label that has no twin on the other strand.
Unstranded tracks (HDF5, unstranded BAM) are only reversed; the soft-mask channel is kept.
"""

from __future__ import annotations

import numpy as np
import torch

from genoseg.errors import InputError

# Input channels A C G T N soft-mask: complementing swaps A<->T and C<->G (as in training).
RC_BASE_CHANNELS = np.array([3, 2, 1, 0, 4, 5])


def mirror_names(names, what: str) -> np.ndarray:
    """(n,) int64: for each name, the index of its other-strand twin (``x+`` <-> ``x-``); names
    without a strand suffix map to themselves. InputError if a stranded name has no twin."""
    names = list(names)
    out = np.arange(len(names))
    for i, name in enumerate(names):
        if name.endswith(("+", "-")):
            twin = name[:-1] + ("-" if name.endswith("+") else "+")
            if twin not in names:
                raise InputError(f"reverse-complement averaging needs every stranded {what} to "
                                 f"have a twin on the other strand: {name!r} has no {twin!r}")
            out[i] = names.index(twin)
    return out


def rc_column_map(model) -> np.ndarray:
    """(n_outputs,) int64: the encoder column of each column on the other strand (an
    involution). Class columns of the scheme's labels, then, under the phase grammar, the site
    columns. InputError where the scheme cannot be mirrored."""
    labels = model.config.scheme.labels
    cols = mirror_names(labels, "label")
    if getattr(model.head, "grammar_name", None) == "phase":
        from genoseg.labels.phase_crf import SITES

        cols = np.concatenate([cols, len(labels) + mirror_names(SITES, "site")])
    if len(cols) != model.n_outputs:  # a head with outputs this module does not know
        raise InputError(f"reverse-complement averaging does not know this model's "
                         f"{model.n_outputs} output columns")
    return cols


def from_reverse_complement(emissions_rc: torch.Tensor, column_map: np.ndarray) -> torch.Tensor:
    """(L, n) scores computed on the reverse-complemented contig -> the same scores in forward
    coordinates and columns (position t <- L - 1 - t, column c <- column_map[c])."""
    return emissions_rc.flip(0)[:, torch.from_numpy(column_map)]


class ReverseComplementSource:
    """The inputs of ``source`` read on the reverse complement of each contig: ``read(seqid, s,
    e)`` is [s, e) of the reverse-complemented contig (the same interface ``contig_emissions``
    reads through). Stranded BAM coverage is refused."""

    def __init__(self, source) -> None:
        if source.spec.bam_stranded:
            raise InputError("reverse-complement averaging (--rc-average, [annotate] "
                             "rc_average) does not handle stranded BAM coverage")
        self.source = source
        self.lengths = source.lengths

    def read(self, seqid: str, start: int = 0, end: int | None = None) -> np.ndarray:
        L = self.lengths[seqid]
        end = L if end is None else end
        x = self.source.read(seqid, L - end, L - start)[::-1]
        out = x.copy()
        out[:, :len(RC_BASE_CHANNELS)] = x[:, RC_BASE_CHANNELS]
        return out
