"""Genome annotation: every contig is decoded as ONE sequence, with no seams.

For each contig: the encoder runs over windows that overlap by at least its receptive field, and
only each window's central part is kept, so the stitched score track equals what the encoder
would give on the whole contig at once; the semi-CRF then scans the whole contig (Viterbi path,
label and boundary posteriors). Small contigs are packed into batches. Segments become gene
models (gene schemes, GFF3) or labelled intervals (BED); posteriors become tracks.

Scores written: a GFF3 gene/mRNA score (and a BED score / 1000) is the mean posterior probability
of the predicted label over the feature's bases (exons only, for gene models).
"""

from __future__ import annotations

import bisect
import copy
import logging
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genoseg.crf import backend as crf
from genoseg.errors import InputError
from genoseg.inputs import InputSource, TrackSpec

log = logging.getLogger(__name__)
# Contigs packed into one CRF batch hold at most this many padded (position, CRF state) cells in
# total (2 Mb for a 10-state model): the CRF's inputs, constraints and gradients scale with both.
PACK_CELLS = 20_000_000
# On a GPU a batch may take this share of the free memory, at this many bytes per cell (the
# posteriors' inputs, stored messages and gradients, with room to spare). A batch costs the
# time of its longest contig whatever its size (one program per contig), so fewer, fuller
# batches are faster: the fly test set went from 5 batches to 2 on an H200.
GPU_PACK_SHARE = 0.5
GPU_BYTES_PER_CELL = 160
# Phase-grammar contigs longer than this go through the memory-lean Viterbi on the host (gene
# models only): the dense CRF inputs over 80 states take about 2.5 GB per Mb. On a GPU too, unless
# posteriors are asked for: the 80-state scans do not converge across chunks, so the GPU decodes a
# contig sequentially, at about 26 us a base for Viterbi and posteriors with the sparse-window
# kernels (6.6 us for the Viterbi alone; H100, session 7; 80 us with the dense ones), against
# about 8 us for the lean Viterbi (chr2R on an H200 host, one thread; it now scans chunks on all
# the host's cores), which also needs no (T, 80) arrays on the card; see
# benchmarks/NOTES_semicrf.md, entries 8 and 10.
LEAN_MIN_LENGTH = 2_000_000
# The encoder pads the windows of a batch to its longest; on a CPU, where a pass costs per
# position, a shorter window joins only if it is at least this share of that width (the fly
# test set: 21 passes; padding everything: 5 passes, but 2.3x the convolution time). On a GPU a
# pass costs mostly its launches, so any window joins (4 passes; 11.5 s for the whole annotate
# on an H100, against 17.0 s with a pass per contig).
PAD_MIN_FILL = {"cpu": 0.8, "cuda": 0.0}


@dataclass
class AnnotateOutputs:
    gff3: str | None = None
    bed: str | None = None
    posteriors: str | None = None  # prefix: PREFIX.h5, PREFIX.<track>.bw (and .bedGraph)
    bedgraph: bool = False


@dataclass
class ContigResult:
    seqid: str
    length: int
    segments: np.ndarray  # (n, 3) [start, end, label]
    segment_scores: np.ndarray  # (n,) mean label posterior of each segment
    label_post: np.ndarray | None = None  # (L, C) float32
    boundary_post: np.ndarray | None = None  # (L,) float32
    log_z: float = float("nan")
    # Phase grammar: each segment's gene label (a phase_crf.CutRun where a contig end may cut it).
    run_labels: list | None = None


@dataclass
class Summary:
    contigs: int = 0
    bases: int = 0
    genes: int = 0
    segments: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    genes_below_score: int = 0  # left out by [annotate] min_gene_score
    genes_unscored: int = 0  # kept: decoded without posteriors, so min_gene_score cannot apply


def contig_emissions(model, source: InputSource, seqid: str, length: int, device,
                     window: int, batch_size: int) -> torch.Tensor:
    """(length, C) float32 emissions of one contig, stitched from overlapping windows
    (``group_emissions`` of this contig alone)."""
    return group_emissions(model, source, [(seqid, length)], device, window, batch_size)[0]


def group_emissions(model, source: InputSource, contigs: list[tuple[str, int]], device,
                    window: int, batch_size: int, min_fill: float | None = None
                    ) -> list[torch.Tensor]:
    """[(length, C) float32 emissions] of each (seqid, length) contig, stitched from
    overlapping windows.

    Window k keeps its outputs for [a, b) and reads inputs [a - h, b + h) clipped to the contig,
    h = half the receptive field; outputs there depend only on inputs inside the window, and at
    the contig ends the convolution's zero padding is the same as for the whole contig.

    The windows of all the contigs go through the encoder together, longest first, in batches
    of at most ``batch_size * window`` padded positions: a batch of short contigs is one forward
    pass, not one per contig (on a GPU each pass costs milliseconds of launches whatever its
    size). A batch of windows of different widths is padded and passes ``lengths``: every conv
    layer then sees zeros past each window's end, exactly the zero padding it applies at the
    end of an unpadded window (zero *inputs* alone would not do: the stem's bias, for one,
    makes the next layer's input non-zero there). ``min_fill``: a window joins a batch only if
    it is at least this share of the batch's width (default: ``PAD_MIN_FILL`` of the device).
    """
    half = (model.receptive_field - 1) // 2
    core = max(1, window - 2 * half)
    outs = [torch.empty((length, model.n_outputs), dtype=torch.float32)
            for _, length in contigs]
    # (input width, contig index, kept [a, b), read [s, e))
    pieces = []
    for i, (_, length) in enumerate(contigs):
        for a in range(0, length, core):
            b = min(a + core, length)
            s, e = max(0, a - half), min(length, b + half)
            pieces.append((e - s, i, a, b, s, e))
    pieces.sort(key=lambda p: -p[0])
    budget = max(1, batch_size) * window
    if min_fill is None:
        min_fill = PAD_MIN_FILL.get(torch.device(device).type, PAD_MIN_FILL["cpu"])
    k = 0
    while k < len(pieces):
        # Longest first: the batch's padded width is its first window's. A window joins while
        # the batch fits the budget and the window is at least min_fill of that width, so
        # padding wastes at most 1 - min_fill of any window's pass.
        width = pieces[k][0]
        n = 1
        while (k + n < len(pieces) and (n + 1) * width <= budget
               and pieces[k + n][0] >= min_fill * width):
            n += 1
        batch = pieces[k:k + n]
        k += n
        x = np.zeros((len(batch), width, model.in_channels), dtype=np.float32)
        for j, (w, i, _, _, s, e) in enumerate(batch):
            x[j, :w] = source.read(contigs[i][0], s, e)
        widths = torch.tensor([p[0] for p in batch], dtype=torch.int64)
        lengths = None if bool((widths == width).all()) else widths.to(device)
        with torch.no_grad():
            y = model(torch.from_numpy(x).to(device), lengths).float().cpu()
        for j, (_, i, a, b, s, _) in enumerate(batch):
            outs[i][a:b] = y[j, a - s:b - s]
    return outs


def contig_scores(model, source: InputSource, seqid: str, length: int, device,
                  rc_source=None, codes: np.ndarray | None = None) -> torch.Tensor:
    """(length, n_outputs) float32 scores that annotate decodes for one contig
    (``group_scores`` of this contig alone; ``codes``: its encoded sequence, if at hand)."""
    return group_scores(model, source, [(seqid, length)], device, rc_source,
                        None if codes is None else [codes])[0]


def group_scores(model, source: InputSource, contigs: list[tuple[str, int]], device,
                 rc_source=None, codes: list[np.ndarray] | None = None) -> list[torch.Tensor]:
    """[(length, n_outputs) float32 scores] that annotate decodes for each (seqid, length)
    contig: the stitched encoder output (``group_emissions``, windows per ``[annotate]``),
    averaged with the output on the reverse-complemented contig mapped back to this strand when
    ``rc_source`` (a ``genoseg.annotate.rc.ReverseComplementSource`` of ``source``) is given,
    plus the intergenic bias and minus the intron penalty, and the ORF start bonus
    (``biased_emissions``; the ORF start bonus reads the contigs' encoded sequences, ``codes``,
    fetched here unless given)."""
    a = model.config.annotate
    ems = group_emissions(model, source, contigs, device, a.window, a.batch_size)
    if rc_source is not None:
        from genoseg.annotate.rc import from_reverse_complement, rc_column_map

        column_map = rc_column_map(model)
        ems_rc = group_emissions(model, rc_source, contigs, device, a.window, a.batch_size)
        for em, em_rc in zip(ems, ems_rc):
            em.add_(from_reverse_complement(em_rc, column_map)).mul_(0.5)
        del ems_rc
    if a.orf_start_bonus:
        if codes is None:
            from genoseg.labels import codons

            codes = [codons.encode(source.genome.fetch(seqid)) for seqid, _ in contigs]
        return [biased_emissions(model, em, c) for em, c in zip(ems, codes)]
    return [biased_emissions(model, em) for em in ems]


def biased_emissions(model, emissions: torch.Tensor, codes: np.ndarray | None = None
                     ) -> torch.Tensor:
    """Emissions with ``[annotate] intergenic_bias`` added to the intergenic class column,
    ``[annotate] intron_penalty`` subtracted from the intron columns (gene schemes) and
    ``[annotate] orf_start_bonus`` added to the start-codon site columns where an ATG opens the
    longest reading frame it lies in (the phase grammar; needs the contig's ``codes``,
    ``genoseg.labels.codons.encode``); unchanged when all are 0."""
    a = model.config.annotate
    labels = model.config.scheme.labels
    if a.intergenic_bias:
        emissions[:, labels.index("intergenic")] += a.intergenic_bias
    if a.intron_penalty:
        for name in ("intron+", "intron-"):
            emissions[:, labels.index(name)] -= a.intron_penalty
    if a.orf_start_bonus:
        from genoseg.crf.phase_head import N_CLASSES
        from genoseg.labels import codons
        from genoseg.labels.phase_crf import SITES

        if codes is None or len(codes) != emissions.shape[0]:
            raise ValueError("orf_start_bonus needs the contig's sequence codes")
        first = codons.first_orf_starts(codes)
        for strand, site in (("plus", "start+"), ("minus", "start-")):
            mask = torch.from_numpy(first[strand])
            emissions[mask, N_CLASSES + SITES.index(site)] += a.orf_start_bonus
    return emissions


def decode_batch(model, emissions: list[torch.Tensor], device,
                 codes: list[np.ndarray] | None = None,
                 columns: list[dict] | None = None) -> list[tuple]:
    """Viterbi + posteriors for contigs of different lengths in one padded batch.

    Through the model head, so everything comes back in class space (the scheme's labels): runs
    of tiled labels as one segment each, label posteriors per class, boundary posteriors per run.
    ``codes`` (the contigs' bases, ``codons.encode``) are needed by the phase grammar, whose
    constraints come from the sequence; each result then ends with the runs' gene labels.
    ``columns``: the contigs' ``head.sequence_columns_of(codes)``, when the caller has them.
    """
    lengths = torch.tensor([e.shape[0] for e in emissions], dtype=torch.int64)
    T, C = int(lengths.max()), emissions[0].shape[1]
    em = torch.zeros((len(emissions), T, C), dtype=torch.float32)
    for b, e in enumerate(emissions):
        em[b, :e.shape[0]] = e
    em, lengths_d = em.to(device), lengths.to(device)
    head = model.head
    run_labels = None
    if getattr(head, "grammar_name", None) == "phase":
        from genoseg.crf.phase_head import pad_codes

        if codes is None:
            raise ValueError("the phase grammar needs the contigs' sequences")
        codes_host = pad_codes(codes, T)
        codes_d = codes_host.to(device)
        complete = model.config.annotate.gene_model == "complete"
        if viterbi_on_host_alongside(em.device, lengths.tolist()):
            scores, paths, run_labels, label_post, boundary_post, log_z = \
                _host_viterbi_device_posteriors(model, emissions, em, lengths, lengths_d,
                                                codes_host, codes_d, complete, columns)
        else:
            cons = None if columns is None else head.constraints(em, codes_d, lengths_d, columns)
            scores, paths, run_labels, label_post, boundary_post, log_z = \
                head.decode_and_posteriors(em, lengths_d, codes=codes_d, constraints=cons,
                                           complete_genes=complete)
    else:
        scores, paths, label_post, boundary_post, log_z = head.decode_and_posteriors(
            em, lengths_d)
    results = []
    for b in range(len(emissions)):
        L = int(lengths[b])
        lp = label_post[b, :L].float().cpu().numpy()
        results.append((paths[b].cpu().numpy(), lp, boundary_post[b, :L].float().cpu().numpy(),
                        float(log_z[b]), float(scores[b]),
                        None if run_labels is None else run_labels[b]))
    return results


# The host Viterbi costs about 8 us a base on one core (chr2R on an H200 host), the card's
# posteriors about 18.6 us a step of a batch's longest contig (H100, session 11): the host
# keeps up while a batch's bases per core stay within this multiple of its longest contig.
HOST_VITERBI_KEEPS_UP = 18.6 / 8.0
# Each process pays the numba start-up of the host Viterbi (loading its cached loop) before the
# first contig: 2.4-2.9 s on the session-13 H100 host (the 45-kb example took 4.3-4.6 s against
# 1.7-1.9 s with the card's Viterbi), 0.7 s on a 2-core CPU. At the card's 6.1 us a step, only
# a batch whose longest contig has about 400 kb of steps repays it.
HOST_VITERBI_MIN_LONGEST = 400_000


def viterbi_on_host_alongside(device, lengths: list[int]) -> bool:
    """Whether a GPU batch of the phase grammar (contig ``lengths``) takes its Viterbi path
    from the lean host Viterbi (``genoseg.crf.phase_viterbi``, numba) while the card computes
    the posteriors.

    The 80-state scans run each contig sequentially, at 6.1 us a step for the GPU Viterbi
    (plus its traceback and the copy of the segments) and 18.6 us for forward and outside
    (H100, session 11): one after the other they took 2.3 and 3.0 s of a 7.8-s annotate of the
    fly test set. The host Viterbi (about 8 us a base on one core, the contigs on threads of
    their own, the GIL released) finishes behind the posteriors, taking the Viterbi off the
    wall time, but every process first pays its numba start-up. Timed on one H100 host in
    session 13, taking it for the fly test set (longest record 118 kb) made annotate slower:
    7.7-8.3 s inside annotate against 6.5-6.6 s for the card's Viterbi (94f95ce), alternating
    in one call. So the host takes over only for a batch whose longest contig is at least
    HOST_VITERBI_MIN_LONGEST. The card runs a batch's contigs side by side and the host only
    core by core, so a batch of many contigs (a fragmented draft genome) keeps its GPU Viterbi:
    the host takes over only while the batch's bases per core are at most
    HOST_VITERBI_KEEPS_UP times its longest contig. The same gene models and scores either way:
    both are exact Viterbi decoders of the same scores (the CLI test forces this path on the
    CPU). The first run ever compiles the numba loop (about 2 s; cached)."""
    if torch.device(device).type != "cuda":
        return False
    from genoseg.crf import phase_viterbi
    from genoseg.crf.threads import available_cores

    if not phase_viterbi.available():
        return False
    longest = max(lengths)
    return (longest >= HOST_VITERBI_MIN_LONGEST
            and sum(lengths) / available_cores() <= HOST_VITERBI_KEEPS_UP * longest)


def _host_viterbi_device_posteriors(model, emissions: list[torch.Tensor], em: torch.Tensor,
                                    lengths: torch.Tensor, lengths_d: torch.Tensor,
                                    codes_host: torch.Tensor, codes: torch.Tensor,
                                    complete: bool, columns: list[dict] | None = None) -> tuple:
    """``head.decode_and_posteriors`` of a phase-grammar batch, the Viterbi on the host's
    threads alongside the posteriors on the card (``viterbi_on_host_alongside``). The
    sequences' constraint columns are built once, for both (here unless ``columns``)."""
    from genoseg.crf import phase_viterbi
    from genoseg.crf.threads import map_sequences

    head = model.head
    lens = lengths.tolist()
    if columns is None:
        columns = head.sequence_columns(codes_host, lens)
    # The host threads read the head's scores from a copy on the host: reading them from the
    # card would wait behind the posteriors' kernels queued there.
    host_head = copy.deepcopy(head).to("cpu")

    def one(b):
        return phase_viterbi.decode(host_head, emissions[b], codes_host[b, :lens[b]].numpy(),
                                    complete_genes=complete, columns=columns[b])

    with ThreadPoolExecutor(max_workers=1) as pool:
        viterbi = pool.submit(map_sequences, one, len(lens))
        cons = head.constraints(em, codes, lengths_d, columns)
        label_post, boundary_post, log_z = head.posteriors(em, lengths_d, codes=codes,
                                                           constraints=cons,
                                                           complete_genes=complete)
        found = viterbi.result()
    scores = torch.tensor([f[0] for f in found], dtype=torch.float64)
    return (scores, [torch.from_numpy(f[1]) for f in found], [f[2] for f in found], label_post,
            boundary_post, log_z)


def _segment_scores(segments: np.ndarray, label_post: np.ndarray) -> np.ndarray:
    """Mean posterior of each segment's own label over its bases (via cumulative sums)."""
    if len(segments) == 0:
        return np.zeros(0)
    csum = np.concatenate([np.zeros((1, label_post.shape[1])),
                           np.cumsum(label_post, axis=0, dtype=np.float64)])
    s, e, c = segments[:, 0], segments[:, 1], segments[:, 2]
    return (csum[e, c] - csum[s, c]) / (e - s)


def annotate(model, meta: dict, genome: str, outputs: AnnotateOutputs, *, device="cpu",
             tracks: str | None = None, bams: tuple[str, ...] = (), min_mapq: int | None = None,
             progress: bool = True, backend: str | None = None,
             sequences: tuple[str, ...] = ()) -> Summary:
    """Annotate every contig of ``genome`` with ``model`` and write the requested outputs.

    ``backend``: the semi-CRF backend for the whole run ("auto", "triton", "cpu", "torch"; None
    keeps the choice in force, see ``genoseg.crf.backend``), checked before any input is read.
    ``sequences``: annotate only these contigs (empty: all); the outputs list only them.
    On a CPU, "auto" here means the compiled CPU twin (``genoseg.crf.cpu``) where numba is
    installed: the same results to float64 rounding, several times faster than the reference.
    """
    from genoseg.crf.threads import limit_torch_threads

    limit_torch_threads()
    with crf.use(backend):
        if crf.current_backend() == "auto" and torch.device(device).type == "cpu":
            from genoseg.crf import cpu as crf_cpu

            if crf_cpu.available():
                backend = "cpu"
    with crf.use(backend):
        crf.resolve(device)  # an unusable backend fails before any input is read
        return _annotate(model, meta, genome, outputs, device=device, tracks=tracks, bams=bams,
                         min_mapq=min_mapq, progress=progress, sequences=sequences)


def _annotate(model, meta: dict, genome: str, outputs: AnnotateOutputs, *, device, tracks,
              bams, min_mapq, progress, sequences=()) -> Summary:
    cfg = model.config
    scheme = cfg.scheme
    inputs = meta.get("inputs", {})
    # BAM coverage is read as the model was trained (strandedness, and MAPQ unless overridden).
    if min_mapq is None:
        min_mapq = int(inputs.get("min_mapq", 0))
    spec = TrackSpec(tuple(inputs.get("hdf5_tracks", ())), int(inputs.get("n_bam", 0)),
                     bool(inputs.get("bam_stranded", False)))
    source = InputSource(genome, tracks, bams, min_mapq, spec.bam_stranded)
    source.check_matches(spec, f"model {meta.get('path', '')}")
    rc_source = None
    if cfg.annotate.rc_average:
        from genoseg.annotate.rc import ReverseComplementSource, rc_column_map

        rc_column_map(model)  # a scheme that cannot be mirrored fails before any work
        rc_source = ReverseComplementSource(source)
        if not cfg.train.rc_augment:
            log.warning("reverse-complement averaging with a model trained without "
                        "[train] rc_augment: its scores on the two strands need not agree")
    # Logged once the inputs are known good: an input error stays the only line on stderr.
    log.info("semi-CRF backend: %s", crf.describe(device))
    lengths = source.lengths
    names = list(source.names)
    if sequences:
        from genoseg.training.loop import check_sequences

        check_sequences(sequences, names, genome)
        names = [s for s in names if s in set(sequences)]
        lengths = {s: lengths[s] for s in names}
    want_posteriors = outputs.posteriors is not None
    summary = Summary(contigs=len(lengths), bases=sum(lengths.values()))
    t_start = time.perf_counter()

    from tqdm import tqdm

    bar = tqdm(total=summary.bases, unit="bp", unit_scale=True, desc="annotate",
               file=sys.stderr, disable=not progress, dynamic_ncols=True)
    results: dict[str, ContigResult] = {}
    pack_positions = max(1, _pack_cells(device) // getattr(model.head, "C_expanded",
                                                           model.head.C))
    groups = pack_contigs(lengths, pack_positions)
    phase = getattr(model.head, "grammar_name", None) == "phase"
    on_cpu = torch.device(device).type == "cpu" and crf.resolve(device) == "cpu"
    lean = {g[0] for g in groups if len(g) == 1 and takes_lean_viterbi(
        phase, on_cpu, lengths[g[0]], want_posteriors, g[0])}
    lean_decodes = lean_workers([lengths[s] for s in lean])
    from genoseg.crf.threads import available_cores

    # Each decode scans its contig in chunks on its share of the cores (phase_viterbi.MIN_CHUNK).
    lean_threads = max(1, available_cores() // lean_decodes)
    pending: dict = {}  # seqid -> Future of its lean decode

    def finish(seqids):
        for seqid in seqids:
            results[seqid] = pending.pop(seqid).result()
            bar.update(lengths[seqid])

    def decode_group(group):
        codes = None  # the phase grammar's constraints and the ORF start bonus read them
        if phase:
            from genoseg.labels import codons

            codes = [codons.encode(source.genome.fetch(s)) for s in group]
        with ThreadPoolExecutor(max_workers=1) as pool:
            columns = None
            if phase and not on_cpu:
                # Host work that the card's Viterbi and posteriors (or the host Viterbi) wait
                # for: build the constraint columns on a thread while the card runs the
                # encoder. (The CPU twin builds them per sequence on its own threads.)
                columns = pool.submit(model.head.sequence_columns_of, codes)
            ems = group_scores(model, source, [(s, lengths[s]) for s in group], device,
                               rc_source, codes)
            decoded = decode_batch(model, ems, device, codes,
                                   None if columns is None else columns.result())
        for seqid, (segments, lp, bp, log_z, vscore, run_labels) in zip(group, decoded):
            if not np.isfinite(vscore):
                raise InputError(f"{seqid}: the model's label scheme allows no segmentation of "
                                 "this contig")
            results[seqid] = ContigResult(
                seqid=seqid, length=lengths[seqid], segments=segments,
                segment_scores=_segment_scores(segments, lp),
                label_post=lp if want_posteriors else None,
                boundary_post=bp if want_posteriors else None, log_z=log_z,
                run_labels=run_labels)
            bar.update(lengths[seqid])

    # Long contigs: the lean Viterbi of one runs on a worker thread (numba releases the GIL)
    # while the encoder scores the next; at most ``lean_decodes`` decodes at once (memory).
    lean_pool = ThreadPoolExecutor(max_workers=lean_decodes)
    try:
        for i, group in enumerate(groups):
            if group[0] not in lean:
                decode_group(group)
                continue
            seqid = group[0]
            log.info("%s (%.1f Mb): gene models from the memory-lean Viterbi on the host",
                     seqid, lengths[seqid] / 1e6)
            codes, em = _lean_scores(model, source, seqid, device, rc_source)
            while len(pending) >= lean_decodes:
                wait(list(pending.values()), return_when=FIRST_COMPLETED)
                finish([s for s, f in pending.items() if f.done()])
            if i == len(groups) - 1:
                # Nothing left to score beside it: decode here. On a worker thread the decode
                # allocates from another malloc arena than the encoder freed memory to (chr2R:
                # peak 14.4 GB against 13.2 GB).
                results[seqid] = _lean_decode(model, seqid, lengths[seqid], codes, em, cfg,
                                              lean_threads)
                bar.update(lengths[seqid])
                continue
            pending[seqid] = lean_pool.submit(_lean_decode, model, seqid, lengths[seqid],
                                              codes, em, cfg, lean_threads)
            del codes, em  # the decode holds them until it is done
        finish(list(pending))
    finally:
        lean_pool.shutdown(wait=True, cancel_futures=True)
    bar.close()
    ordered = [results[s] for s in names]
    source.close()
    _write_outputs(ordered, scheme, meta, outputs, lengths, summary,
                   partial_genes=cfg.annotate.gene_model == "partial",
                   min_gene_score=cfg.annotate.min_gene_score)
    if summary.genes_below_score:
        log.info("left out %d gene models scoring below min_gene_score %g",
                 summary.genes_below_score, cfg.annotate.min_gene_score)
    if summary.genes_unscored:
        log.warning("%d gene models kept unscored: their contigs were decoded without "
                    "posteriors (the memory-lean Viterbi on a CPU), so min_gene_score %g could "
                    "not apply to them", summary.genes_unscored, cfg.annotate.min_gene_score)
    summary.seconds = time.perf_counter() - t_start
    summary.segments = sum(len(r.segments) for r in ordered)
    return summary


def pack_contigs(lengths: dict[str, int], pack_positions: int) -> list[list[str]]:
    """Contigs grouped into CRF batches of at most ``pack_positions`` padded positions (a lone
    longer contig is a batch of its own), longest first: a batch's CRF scan costs the length of
    its longest contig, so the batches together cost the sum of their longest, and filling each
    batch with the longest contigs left keeps that sum smallest. Shortest first, the fly test
    set's 118 kb record had a GPU batch to itself after one whose longest was 48 kb (166 k
    sequential steps); longest first, it takes the next 25 longest along (122 k steps)."""
    groups, current, longest = [], [], 0
    for seqid in sorted(lengths, key=lambda s: -lengths[s]):
        n = lengths[seqid]
        if current and longest * (len(current) + 1) > pack_positions:
            groups.append(current)
            current, longest = [], 0
        current.append(seqid)
        longest = max(longest, n)
    if current:
        groups.append(current)
    return groups


def takes_lean_viterbi(phase: bool, on_cpu: bool, length: int, want_posteriors: bool,
                       seqid: str) -> bool:
    """Whether a contig alone in its batch is decoded by the memory-lean phase Viterbi: phase
    grammar, longer than LEAN_MIN_LENGTH, and on a CPU (where the dense inputs would not fit) or
    on a GPU without posteriors (where the lean Viterbi is faster). Posteriors of such a contig
    on a CPU are a one-line error."""
    if not phase or length <= LEAN_MIN_LENGTH:
        return False
    if on_cpu and want_posteriors:
        raise InputError(
            f"{seqid}: posteriors of a {length / 1e6:.1f} Mb contig under the phase grammar "
            f"need a GPU (--device cuda); on a CPU contigs over {LEAN_MIN_LENGTH / 1e6:.0f} Mb "
            f"get gene models only")
    return on_cpu or not want_posteriors


def _pack_cells(device) -> int:
    """Padded (position, state) cells of one CRF batch on this device."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return PACK_CELLS
    free, _total = torch.cuda.mem_get_info(dev)
    return max(PACK_CELLS, int(GPU_PACK_SHARE * free / GPU_BYTES_PER_CELL))


# Peak memory of one contig through the lean Viterbi, per base: 9.5 GB for chr2R (21.1 Mb) on
# the CPU since its max_end columns are int32 (13.2 GB before), encoder and inputs included,
# with a margin for the next contig's scores.
LEAN_BYTES_PER_BASE = 520


def lean_workers(lean_lengths: list[int]) -> int:
    """How many long contigs the lean Viterbi decodes at once: one per core, as many as the
    available memory holds at LEAN_BYTES_PER_BASE of the longest, at least one."""
    if not lean_lengths:
        return 1
    from genoseg.crf.threads import available_cores, available_memory

    memory = available_memory()
    fit = (available_cores() if memory is None
           else memory // (LEAN_BYTES_PER_BASE * max(lean_lengths)))
    return max(1, min(available_cores(), len(lean_lengths), fit))


def _lean_scores(model, source, seqid: str, device, rc_source=None):
    """A long contig's codes and (length, n_outputs) scores for the lean Viterbi (the encoder;
    on the GPU where ``device`` is one)."""
    from genoseg.labels import codons

    codes = codons.encode(source.genome.fetch(seqid))
    scores = contig_scores(model, source, seqid, len(codes), device, rc_source, codes)
    return codes, scores.cpu()  # off the card: it may score the next contig meanwhile


def _lean_decode(model, seqid: str, length: int, codes: np.ndarray, em: torch.Tensor,
                 cfg, threads: int = 1) -> ContigResult:
    """One long contig through the memory-lean phase Viterbi (``genoseg.crf.phase_viterbi``),
    scanned in chunks on ``threads`` threads: the same gene models as the dense path, without
    posteriors (segment scores NaN)."""
    from genoseg.crf import phase_viterbi

    stats: dict = {}
    score, segments, run_labels = phase_viterbi.decode(
        model.head, em, codes, complete_genes=cfg.annotate.gene_model == "complete",
        threads=threads, stats=stats)
    if stats["chunks"] > 1:
        log.info("%s: Viterbi in %d chunks on %d threads; %d chunk scans repeated (a warm-up "
                 "that did not reach its predecessor's state)", seqid, stats["chunks"], threads,
                 stats["reruns"])
    if not np.isfinite(score):
        raise InputError(f"{seqid}: the model's label scheme allows no segmentation of this "
                         "contig")
    return ContigResult(seqid=seqid, length=length, segments=segments,
                        segment_scores=np.full(len(segments), np.nan), run_labels=run_labels)


def _write_outputs(results: list[ContigResult], scheme, meta: dict, outputs: AnnotateOutputs,
                   lengths: dict[str, int], summary: Summary, partial_genes: bool = False,
                   min_gene_score: float = 0.0) -> None:
    """``partial_genes`` (phase grammar, ``--gene-model partial``): genes cut by a contig end
    go to the GFF3 too, as partial gene models (``phase_crf.gene_transcripts``).
    ``min_gene_score`` (``[annotate] min_gene_score``): gene models scoring below it are left
    out of the GFF3, and their segments out of the BED."""
    from genoseg.io.features import Segment
    from genoseg.labels.runs import merge_segments

    if outputs.gff3 is not None and scheme.kind != "gene":
        raise InputError(f"model scheme {scheme.name!r} is not a gene-structure scheme; "
                         "write --bed instead of GFF3")
    dropped: dict[str, list[tuple[int, int]]] = {}
    if scheme.kind == "gene" and (outputs.gff3 is not None
                                  or (outputs.bed is not None and min_gene_score > 0)):
        transcripts = _gene_models(results, scheme, partial_genes)
        if min_gene_score > 0:
            transcripts, dropped = _drop_low_scores(transcripts, min_gene_score, summary)
        summary.genes = len(transcripts)
    if outputs.gff3 is not None:
        from genoseg.io.gff3 import write_gff3

        # Seqids in byte order: the order `gt gff3 -sort` produces and `gt eval` expects.
        write_gff3(outputs.gff3, transcripts, dict(sorted(lengths.items())), source="genoseg")
        summary.outputs.append(outputs.gff3)
    if outputs.bed is not None:
        from genoseg.io.bed import write_bed

        segments = []
        background = scheme.background
        for r in results:
            runs, members = merge_segments(r.segments)
            left_out = dropped.get(r.seqid, [])
            starts = [a for a, _ in left_out]
            for (s, e, c), idx in zip(runs, members):
                label = scheme.labels[int(c)]
                if label == background:
                    continue
                k = bisect.bisect_right(starts, int(s)) - 1
                if k >= 0 and int(e) <= left_out[k][1]:
                    continue  # a run of a gene model left out for its score
                score = float(np.mean(r.segment_scores[idx])) if len(idx) else None
                if score is not None and not np.isfinite(score):
                    score = None
                strand = "+" if label.endswith("+") else "-" if label.endswith("-") else "."
                segments.append(Segment(r.seqid, int(s), int(e), label, strand, score))
        write_bed(outputs.bed, segments, colors=dict(zip(scheme.labels, scheme.colors)),
                  bed9=True, seqids=list(lengths))
        summary.outputs.append(outputs.bed)
    if outputs.posteriors is not None:
        _write_posteriors(results, scheme, meta, outputs, lengths, summary)


def _gene_models(results: list[ContigResult], scheme, partial_genes: bool) -> list:
    """The gene models (``Transcript``) of decoded contigs, each scored by the mean of its
    exons' segment scores where the contig has posteriors."""
    from genoseg.labels.gene import segments_to_transcripts

    transcripts = []
    for r in results:
        if r.run_labels is not None:
            # Phase grammar: genes cut by a contig end (only decoded with --gene-model
            # partial) are partial gene models, marked so in the GFF3.
            from genoseg.labels.phase_crf import gene_transcripts

            scores = r.segment_scores
            if len(scores) and not np.isfinite(scores).any():
                scores = None  # decoded without posteriors (a long contig on a CPU)
            transcripts += gene_transcripts(r.segments, r.run_labels, r.seqid,
                                            scores=scores, partial=partial_genes)
        else:
            transcripts += segments_to_transcripts(r.segments, r.seqid, scheme,
                                                   segment_scores=r.segment_scores)
    return transcripts


def _drop_low_scores(transcripts: list, min_score: float, summary: Summary
                     ) -> tuple[list, dict[str, list[tuple[int, int]]]]:
    """(the gene models scoring at least ``min_score`` or unscored, {seqid: sorted (start, end)
    extents of those left out}); counts both kinds left alone or out in ``summary``."""
    kept, dropped = [], {}
    for t in transcripts:
        if t.score is None or not np.isfinite(t.score):
            summary.genes_unscored += 1
            kept.append(t)
        elif t.score >= min_score:
            kept.append(t)
        else:
            summary.genes_below_score += 1
            dropped.setdefault(t.seqid, []).append((t.start, t.end))
    for spans in dropped.values():
        spans.sort()
    return kept, dropped


def _write_posteriors(results, scheme, meta, outputs: AnnotateOutputs, lengths, summary):
    from genoseg.io.tracks import HDF5TrackWriter, write_bedgraph, write_bigwig

    prefix = outputs.posteriors
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    h5_path = f"{prefix}.h5"
    attrs = {"labels": list(scheme.labels), "model": meta.get("path", ""),
             "model_sha256": meta.get("weights_sha256", ""), "coordinates": "0-based"}
    with HDF5TrackWriter(h5_path, attrs=attrs) as writer:
        for r in results:
            writer.add(r.seqid, "label_posterior", r.label_post, {"labels": list(scheme.labels)})
            writer.add(r.seqid, "boundary_posterior", r.boundary_post)
    summary.outputs.append(h5_path)
    tracks = {"boundary": {r.seqid: r.boundary_post for r in results}}
    for c, label in enumerate(scheme.labels):
        tracks[_safe_name(label)] = {r.seqid: r.label_post[:, c] for r in results}
    for name, values in tracks.items():
        path = f"{prefix}.{name}.bw"
        # 3 decimals: noisy per-base values become runs, which bigWig stores (and writes) fast.
        write_bigwig(path, lengths, values, decimals=3)
        summary.outputs.append(path)
        if outputs.bedgraph:
            path = f"{prefix}.{name}.bedGraph"
            write_bedgraph(path, values)
            summary.outputs.append(path)


def _safe_name(label: str) -> str:
    return label.replace("+", "plus").replace("-", "minus").replace("/", "_")
