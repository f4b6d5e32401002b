"""Training and annotating with signal tracks: BAM coverage (plain and stranded) and HDF5 tracks.

The model records which inputs it was trained with; annotate must be given the same ones, and
reads them the same way (strandedness, MAPQ filter).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pysam
import pytest

from test_cli import DATA, TINY_CONFIG, assert_one_line_error, fasta_lengths, invoke, run_main


def _write_bam(path: Path, lengths: dict[str, int], seed: int = 0) -> Path:
    """Reads on both strands with mixed MAPQ, sorted and indexed."""
    rng = np.random.default_rng(seed)
    header = {"HD": {"VN": "1.6", "SO": "coordinate"},
              "SQ": [{"SN": name, "LN": n} for name, n in lengths.items()]}
    unsorted = path.with_suffix(".unsorted.bam")
    with pysam.AlignmentFile(str(unsorted), "wb", header=header) as out:
        for ref, (name, n) in enumerate(lengths.items()):
            for k in range(40):
                read = pysam.AlignedSegment(out.header)
                read.query_name = f"{name}.{k}"
                read.reference_id = ref
                read.reference_start = int(rng.integers(0, n - 50))
                read.cigarstring = "50M"
                read.query_sequence = "A" * 50
                read.query_qualities = pysam.qualitystring_to_array("I" * 50)
                read.mapping_quality = int(rng.choice([0, 60]))
                read.is_reverse = bool(k % 2)
                out.write(read)
    pysam.sort("-o", str(path), str(unsorted))
    pysam.index(str(path))
    return path


@pytest.fixture(scope="module")
def signals(tmp_path_factory):
    folder = tmp_path_factory.mktemp("signals")
    fa, gff3 = folder / "mini.fa", folder / "mini.gff3"
    fa.write_text((DATA / "mini.fa").read_text())
    gff3.write_text((DATA / "mini.gff3").read_text())
    lengths = fasta_lengths(fa)
    bam = _write_bam(folder / "reads.bam", lengths)
    h5 = folder / "tracks.h5"
    with h5py.File(h5, "w") as f:
        for name, n in lengths.items():
            f[f"{name}/conservation"] = np.linspace(0, 1, n, dtype=np.float32)
            f[f"{name}/gc"] = np.full(n, 0.4, dtype=np.float32)
    return {"fa": fa, "gff3": gff3, "bam": bam, "h5": h5, "dir": folder}


def test_stranded_bam_and_hdf5_tracks_end_to_end(signals):
    model = signals["dir"] / "model"
    invoke("train", "-g", signals["fa"], "-a", signals["gff3"], "-c", TINY_CONFIG, "-o", model,
           "--bam", signals["bam"], "--bam-stranded", "--min-mapq", "30",
           "--tracks", signals["h5"], "-q")
    meta = json.loads((model / "model.json").read_text())
    assert meta["inputs"] == {"hdf5_tracks": ["conservation", "gc"], "n_bam": 1,
                              "bam_stranded": True, "min_mapq": 30}
    # 6 sequence channels + 2 HDF5 tracks + 2 strands of one BAM
    from genoseg.models import load_model

    net, _ = load_model(model)
    assert net.in_channels == 10
    out = signals["dir"] / "pred.gff3"
    invoke("annotate", signals["fa"], "-m", model, "-o", out, "--bam", signals["bam"],
           "--tracks", signals["h5"], "-q")
    assert out.read_text().startswith("##gff-version 3")


def test_annotate_without_the_models_tracks_is_one_line_error(signals):
    model = signals["dir"] / "model_bam"
    invoke("train", "-g", signals["fa"], "-a", signals["gff3"], "-c", TINY_CONFIG, "-o", model,
           "--bam", signals["bam"], "-q")
    out = signals["dir"] / "missing.gff3"
    code, stdout, err = run_main("annotate", signals["fa"], "-m", model, "-o", out, "-q")
    line = assert_one_line_error(code, stdout, err)
    assert "BAM" in line
    assert not out.exists()


def test_coverage_channels_follow_strand_and_mapq(signals):
    from genoseg.inputs import InputSource

    name = next(iter(fasta_lengths(signals["fa"])))
    both = InputSource(signals["fa"], bams=(signals["bam"],)).read(name)
    split = InputSource(signals["fa"], bams=(signals["bam"],), bam_stranded=True).read(name)
    strict = InputSource(signals["fa"], bams=(signals["bam"],), min_mapq=30).read(name)
    assert both.shape[1] == 7 and split.shape[1] == 8
    # log1p(plus + minus) == log1p(total), base by base
    total = np.expm1(split[:, 6]) + np.expm1(split[:, 7])
    np.testing.assert_allclose(np.expm1(both[:, 6]), total, rtol=1e-5, atol=1e-4)
    assert (strict[:, 6] <= both[:, 6]).all() and (strict[:, 6] < both[:, 6]).any()


def test_rc_average_with_tracks(signals):
    """--rc-average reads unstranded tracks (HDF5, unstranded BAM) reversed; with stranded BAM
    coverage it is a one-line error that writes nothing."""
    unstranded, stranded = signals["dir"] / "model_rc", signals["dir"] / "model_rc_stranded"
    for model, flags in ((unstranded, ()), (stranded, ("--bam-stranded",))):
        invoke("train", "-g", signals["fa"], "-a", signals["gff3"], "-c", TINY_CONFIG, "-o",
               model, "--bam", signals["bam"], "--tracks", signals["h5"], *flags, "-q")
    out = signals["dir"] / "rc.gff3"
    invoke("annotate", signals["fa"], "-m", unstranded, "-o", out, "--bam", signals["bam"],
           "--tracks", signals["h5"], "--rc-average", "-q")
    assert out.read_text().startswith("##gff-version 3")
    bad = signals["dir"] / "rc_stranded.gff3"
    code, stdout, err = run_main("annotate", signals["fa"], "-m", stranded, "-o", bad,
                                 "--bam", signals["bam"], "--tracks", signals["h5"],
                                 "--rc-average", "-q")
    assert "stranded BAM" in assert_one_line_error(code, stdout, err)
    assert not bad.exists()
