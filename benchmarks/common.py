"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<script>.py``, so this
folder is on sys.path and ``import common`` finds this file)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The commit a row belongs to: GENOSEG_COMMIT if set (e.g. on the device machine, whose
    copy of the tree has no git history), else ``git rev-parse --short HEAD``."""
    if os.environ.get("GENOSEG_COMMIT"):
        return os.environ["GENOSEG_COMMIT"]
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                       text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def append_rows(path: Path, fields: list[str], rows: list[dict], delimiter: str = "\t") -> None:
    """Append rows to a results table, writing its header first if the file is new."""
    import csv

    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fields, delimiter=delimiter)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def config_split(config: str, genome: str, annotation: str, sequences: str = ""):
    """A training config's split of a genome, exactly as ``genoseg train`` makes it
    (``genoseg.training.data.training_split``, with the run's ``--sequences``, comma-separated):
    (config, input source, gold labels, training regions, validation regions). The caller
    closes the source."""
    from genoseg.config import load_config
    from genoseg.inputs import InputSource
    from genoseg.training.data import gold_labels, training_split

    cfg = load_config(config)
    source = InputSource(genome)
    labels, _ = gold_labels(annotation, cfg.scheme, source.lengths)
    train, val = training_split(source.names, source.lengths, labels,
                                sequences.split(",") if sequences else (),
                                cfg.train.val_fraction, cfg.train.seed)
    return cfg, source, labels, train, val


def raw_scores(model, genome: str, sequences: str) -> tuple[dict, dict, dict]:
    """The encoder's raw scores of some sequences of a genome, on the CPU as ``genoseg
    annotate`` makes them (``group_emissions``, the model's annotate window and batch): (seqid ->
    (L, n_outputs) scores, seqid -> (L,) uint8 codes, seqid -> length) for the comma-separated
    ``sequences``. The encoder time goes to stderr."""
    import sys
    import time

    from genoseg.annotate.pipeline import group_emissions
    from genoseg.inputs import InputSource
    from genoseg.labels import codons

    a = model.config.annotate
    source = InputSource(genome)
    seqids = sequences.split(",")
    lengths = {s: source.lengths[s] for s in seqids}
    t0 = time.perf_counter()
    raw = dict(zip(seqids, group_emissions(model, source, list(lengths.items()), "cpu",
                                           a.window, a.batch_size)))
    codes = {s: codons.encode(source.genome.fetch(s)) for s in seqids}
    source.close()
    print(f"encoder: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return raw, codes, lengths


def decode_settings_grid(biases: str, penalties: str) -> list[tuple[float, float]]:
    """Every (intergenic bias, intron penalty) pair of two comma-separated lists."""
    return [(float(b), float(q)) for b in biases.split(",") for q in penalties.split(",")]


def decode_with_setting(model, meta: dict, emissions: dict, codes: dict, lengths: dict,
                        bias: float, penalty: float, gff3: Path, complete_genes: bool,
                        orf_start_bonus: float | None = None) -> int:
    """Gene models of raw encoder ``emissions`` (seqid -> (L, n_outputs)) decoded with this
    ``[annotate] intergenic_bias`` and ``intron_penalty`` (and ``orf_start_bonus`` unless None;
    they replace the model's own), by the memory-lean phase Viterbi on the CPU, written to
    ``gff3``; returns the number of genes."""
    import dataclasses

    from genoseg.annotate.pipeline import biased_emissions
    from genoseg.crf import phase_viterbi

    changes = dict(intergenic_bias=bias, intron_penalty=penalty)
    if orf_start_bonus is not None:
        changes["orf_start_bonus"] = orf_start_bonus
    model.config = dataclasses.replace(model.config, annotate=dataclasses.replace(
        model.config.annotate, **changes))
    decoded = {}
    for seqid, em in emissions.items():
        _, segments, run_labels = phase_viterbi.decode(
            model.head, biased_emissions(model, em.clone(), codes[seqid]), codes[seqid],
            complete_genes=complete_genes)
        decoded[seqid] = (segments, run_labels)
    return write_decoded(model, meta, decoded, lengths, gff3)


def write_decoded(model, meta: dict, decoded: dict, lengths: dict, gff3: Path) -> int:
    """The gene models of decoded contigs (seqid -> (class rows, run labels), as the phase
    head's decoders give them), unscored, written to ``gff3`` as ``genoseg annotate`` writes
    them; returns the number of genes."""
    import numpy as np

    from genoseg.annotate.pipeline import (AnnotateOutputs, ContigResult, Summary,
                                           _write_outputs)

    results = [ContigResult(seqid=seqid, length=lengths[seqid], segments=segments,
                            segment_scores=np.full(len(segments), np.nan),
                            run_labels=run_labels)
               for seqid, (segments, run_labels) in decoded.items()]
    summary = Summary()
    _write_outputs(results, model.config.scheme, meta, AnnotateOutputs(gff3=str(gff3)),
                   lengths, summary)
    return summary.genes


def scored_levels(reference, prediction, /, **fields) -> tuple[dict, list[dict]]:
    """``genoseg evaluate`` of a prediction against a reference: (its levels, one results row
    per level gene / exon / nucleotide: today's date, the commit, ``fields``, and sensitivity,
    specificity and F1 to 4 decimals). ``fields`` may name a column "reference" or
    "prediction" too (the two paths are positional only)."""
    import datetime

    from genoseg import evaluate as ev

    levels = ev.to_dict(ev.evaluate(reference, prediction))["levels"]
    rows = [dict(date=datetime.date.today().isoformat(), commit=commit(), **fields, level=level,
                 sensitivity=f"{levels[level]['sensitivity']:.4f}",
                 specificity=f"{levels[level]['specificity']:.4f}",
                 F1=f"{levels[level]['f1']:.4f}")
            for level in ("gene", "exon", "nucleotide")]
    return levels, rows


def _attributes(text: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in text.strip().split(";") if "=" in kv)


def split_reference(reference: str, tmp: Path, seqid: str | None = None,
                    end: int | None = None) -> dict[str, Path]:
    """Reference GFF3s (in ``tmp``) of the ``split=train`` and of the ``split=test`` genes of a
    reference that marks them (../shared/data/dmel_augustus/chr2R_genes.gff3.gz does), only
    those on ``seqid`` ending by ``end`` if given. Empty dict if no gene has a split."""
    import gzip

    opener = gzip.open if str(reference).endswith(".gz") else open
    with opener(reference, "rt") as handle:
        lines = [l for l in handle if not l.startswith("#") and l.strip()]
    genes = {}
    for line in lines:
        f = line.split("\t")
        if f[2] == "gene" and (seqid is None or f[0] == seqid):
            a = _attributes(f[8])
            genes[a["ID"]] = (end is None or int(f[4]) <= end, a.get("split"))
    if not any(split for _, split in genes.values()):
        return {}
    out = {}
    for split in ("train", "test"):
        path = Path(tmp) / f"ref_{split}.gff3"
        with path.open("w") as fh:
            fh.write("##gff-version 3\n")
            for line in lines:
                a = _attributes(line.split("\t")[8])
                root = (a.get("ID") or a.get("Parent", "")).split(".")[0]
                if genes.get(root) == (True, split):
                    fh.write(line)
        out[split] = path
    return out
