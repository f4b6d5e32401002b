"""The `genoseg` command line, end to end: train -> annotate -> outputs, resume, bad inputs.

Most runs are in-process (click's CliRunner), so torch is imported once for the whole module; a
few go through `python -m genoseg` in a subprocess to check what a user really sees: exit status,
exactly one line on stderr, no traceback. Everything uses configs/models/tiny_test.toml (a
width-8 CNN, K = 40, 4 steps) on tests/data/cli/mini.{fa,gff3} (3 fly gene records, 3.5 kb),
because the CPU reference CRF costs ~100 us per position.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from genoseg.cli import cli, main

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "cli"
TINY_CONFIG = REPO / "configs" / "models" / "tiny_test.toml"
DEFAULT_MODEL = REPO / "genoseg" / "models" / "default"
MODEL_FILES = ("config.toml", "weights.pt", "model.json", "MODEL_CARD.md")


# ------------------------------------------------------------------------------------------------
# Helpers


def fasta_lengths(path: Path) -> dict[str, int]:
    lengths: dict[str, int] = {}
    name = None
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            lengths[name] = 0
        elif name is not None:
            lengths[name] += len(line.strip())
    return lengths


def bed_rows(path: Path) -> list[tuple]:
    """(seqid, start, end, name) of a BED file's intervals, in file order."""
    return [(f[0], int(f[1]), int(f[2]), f[3]) for f in
            (line.split("\t") for line in path.read_text().splitlines())
            if f and f[0] and not f[0].startswith(("track", "#", "browser"))]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def invoke(*args: str):
    """Run `genoseg ARGS` in-process through click; fail with its output if it did not exit 0."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)
    if result.exit_code != 0:
        raise AssertionError(f"genoseg {' '.join(map(str, args))} exited {result.exit_code}:\n"
                             f"{result.output}\n{result.exception!r}")
    return result


def run_main(*args: str) -> tuple[int, str, str]:
    """Run the real entry point `genoseg.cli.main` (which turns errors into one line) in-process.
    Returns (exit status, stdout, stderr)."""
    runner = CliRunner()
    with runner.isolation() as streams:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    return code, out, err


def subprocess_genoseg(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genoseg", *map(str, args)], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=timeout)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("GENOSEG_DEBUG", None)  # it would turn internal errors into tracebacks on purpose
    return env


def assert_one_line_error(code: int, out: str, err: str, prefix: str = "genoseg: error:") -> str:
    assert code != 0, f"exit status 0 for bad input; stderr: {err!r}"
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert lines[0].startswith(prefix), lines[0]
    assert "internal error" not in lines[0], lines[0]
    assert out == "", f"nothing belongs on stdout after an error, got {out[:200]!r}"
    return lines[0]


def assert_nothing_left(directory: Path, before: set[str]) -> None:
    """No new file or folder (output, temporary file, empty model dir) in ``directory``."""
    after = {p.name for p in directory.iterdir()}
    # faidx indexes of an input FASTA are caches, not outputs
    new = {n for n in after - before if not n.endswith((".fai", ".gzi"))}
    assert not new, f"left behind after an error: {sorted(new)}"


def parse_gff3(path: Path) -> tuple[list[str], list[list[str]]]:
    """(## directive lines, feature rows as 9 columns)."""
    directives, rows = [], []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            directives.append(line)
        elif line.strip():
            cols = line.split("\t")
            assert len(cols) == 9, line
            rows.append(cols)
    return directives, rows


def attributes(column: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in column.split(";") if item)


def assert_same_datasets(a_path: Path, b_path: Path, atol: float | None = None) -> None:
    """Every dataset of HDF5 file a is in b with the same values: bitwise, or within ``atol``."""
    import h5py

    with h5py.File(a_path) as a, h5py.File(b_path) as b:
        names = []
        a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
        assert names
        for n in names:
            if atol is None:
                np.testing.assert_array_equal(b[n][()], a[n][()], err_msg=n)
            else:
                np.testing.assert_allclose(b[n][()], a[n][()], rtol=0, atol=atol, err_msg=n)


def check_gff3(path: Path, lengths: dict[str, int], line_sorted: bool = True) -> None:
    """The GFF3 promises of DESIGN.md: header, sequence regions, sorted, unique IDs, gene ->
    mRNA -> exon/CDS hierarchy, CDS phases per the spec on both strands (a CDS whose 5' end is
    missing, NCBI's start_range on its + row / end_range on its - row, may begin at any phase;
    every other begins at 0).

    Sorted: genes by seqid then start; with ``line_sorted`` every line (genoseg writes exon and
    CDS part by part, so its files are sorted line by line, as `gt gff3 -sort` leaves them)."""
    directives, rows = parse_gff3(path)
    assert directives[0] == "##gff-version 3"
    regions = {d.split()[1]: (int(d.split()[2]), int(d.split()[3]))
               for d in directives if d.startswith("##sequence-region")}
    assert regions == {s: (1, n) for s, n in lengths.items()}

    # Sorted: each seqid in one contiguous block, starts non-decreasing inside it.
    seen_blocks: list[str] = []
    last_start: dict[str, int] = {}
    for seqid, _src, ftype, start, end, *_ in rows:
        if not seen_blocks or seen_blocks[-1] != seqid:
            assert seqid not in seen_blocks, f"{seqid} appears in two blocks: not sorted"
            seen_blocks.append(seqid)
        if line_sorted or ftype == "gene":
            assert int(start) >= last_start.get(seqid, 1), f"{path}: not sorted at {seqid}"
            last_start[seqid] = int(start)
        assert 1 <= int(start) <= int(end) <= lengths[seqid]

    # IDs: unique across features; only the parts of one CDS share an ID (one multi-line
    # feature, which the spec allows when type and Parent agree).
    owner: dict[str, tuple[str, str]] = {}
    types: dict[str, str] = {}
    for row in rows:
        attrs = attributes(row[8])
        fid, parent = attrs.get("ID"), attrs.get("Parent", "")
        assert fid, f"feature without ID: {row}"
        key = (row[2], parent)
        if fid in owner:
            assert row[2] == "CDS" and owner[fid] == key, f"duplicate ID {fid}"
        owner[fid] = key
        types[fid] = row[2]
    for row in rows:
        attrs = attributes(row[8])
        parent = attrs.get("Parent")
        expected_parent = {"gene": None, "mRNA": "gene", "exon": "mRNA", "CDS": "mRNA"}[row[2]]
        if expected_parent is None:
            assert parent is None
        else:
            assert types[parent] == expected_parent, row

    # CDS phase: bases to skip at the part's 5' end to reach a codon start, counting the CDS
    # bases of earlier parts in transcript order (descending start on the - strand).
    cds: dict[str, list[tuple[int, int, str, int, bool]]] = {}
    for row in rows:
        if row[2] == "CDS":
            attrs = attributes(row[8])
            cut5 = "start_range" in attrs if row[6] == "+" else "end_range" in attrs
            cds.setdefault(attrs["Parent"], []).append(
                (int(row[3]), int(row[4]), row[6], int(row[7]), cut5))
    for parent, parts in cds.items():
        strands = {p[2] for p in parts}
        assert len(strands) == 1 and strands <= {"+", "-"}, parent
        parts.sort(reverse=strands == {"-"})
        phase5 = parts[0][3] if parts[0][4] else 0
        done = 0
        for start, end, _strand, phase, _ in parts:
            assert phase == (phase5 - done) % 3, f"{parent}: phase {phase} after {done} bases"
            done += end - start + 1


# ------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def mini(tmp_path_factory) -> dict[str, Path]:
    """The mini genome and annotation copied to a temporary folder (indexes land there)."""
    folder = tmp_path_factory.mktemp("mini")
    for name in ("mini.fa", "mini.gff3"):
        shutil.copy(DATA / name, folder / name)
    return {"fa": folder / "mini.fa", "gff3": folder / "mini.gff3", "dir": folder}


@pytest.fixture(scope="session")
def tiny_model(mini, tmp_path_factory) -> Path:
    """A model trained once per session with the tiny config (4 steps, ~5 s)."""
    out = tmp_path_factory.mktemp("tiny") / "model"
    invoke("train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG, "-o", out, "-q")
    return out


@pytest.fixture(scope="session")
def annotated(mini, tiny_model, tmp_path_factory) -> dict[str, Path]:
    """One annotate run writing every output (GFF3, BED9, HDF5 + bigWig + bedGraph posteriors)."""
    out = tmp_path_factory.mktemp("annotated")
    invoke("annotate", mini["fa"], "-m", tiny_model, "-o", out / "pred.gff3", "--bed",
           out / "pred.bed", "--posteriors", out / "post", "--bedgraph", "-q")
    return {"dir": out, "gff3": out / "pred.gff3", "bed": out / "pred.bed",
            "h5": out / "post.h5", "prefix": out / "post"}


@pytest.fixture
def bad_inputs(tmp_path) -> Path:
    """Malformed inputs, one file each."""
    (tmp_path / "empty.fa").write_bytes(b"")
    (tmp_path / "nondna.fa").write_text(">a\nACGTJ\n")
    (tmp_path / "duplicate.fa").write_text(">a\nACGTACGT\n>b\nACGT\n>a\nACGT\n")
    # A real binary file (bytes 0..255) passed as a genome.
    (tmp_path / "binary.fa").write_bytes(bytes(range(256)) * 16)
    lines = (DATA / "mini.gff3").read_text().splitlines(keepends=True)
    lines[6] = lines[6].replace("\t", " ")  # a feature line without its tabs
    (tmp_path / "malformed.gff3").write_text("".join(lines))
    (tmp_path / "otherseqs.gff3").write_text(
        (DATA / "mini.gff3").read_text().replace("chr2R_", "chrX_"))
    config = TINY_CONFIG.read_text().replace('file = "../schemes/gene_basic.toml"',
                                             f'file = "{REPO}/configs/schemes/gene_basic.toml"')
    (tmp_path / "unknown_key.toml").write_text(config.replace("steps = 4", "stepz = 4"))
    return tmp_path


# ------------------------------------------------------------------------------------------------
# Startup


def test_help_imports_no_torch():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from genoseg.cli import cli\n"
        "for args in (['--help'], ['train', '--help'], ['annotate', '--help'],\n"
        "             ['models', '--help'], ['--version']):\n"
        "    result = CliRunner().invoke(cli, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'h5py', 'pysam', 'pyBigWig')\n"
        "               if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_help_is_fast():
    # Best of three: the machine may be busy; an import of torch alone takes several seconds.
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        proc = subprocess_genoseg("--help", timeout=60)
        best = min(best, time.perf_counter() - t0)
        assert proc.returncode == 0 and "annotate" in proc.stdout
        assert proc.stderr == ""
    assert best < 2.0, f"`python -m genoseg --help` took {best:.2f} s"


# ------------------------------------------------------------------------------------------------
# Train -> annotate


def test_model_directory_describes_itself(tiny_model, mini):
    for name in MODEL_FILES:
        assert (tiny_model / name).is_file(), name
    meta = json.loads((tiny_model / "model.json").read_text())
    assert meta["weights_sha256"] == sha256(tiny_model / "weights.pt")
    assert meta["metrics"]["steps"] == 4
    assert meta["training_data"]["genome"] == str(mini["fa"])
    assert meta["inputs"] == {"hdf5_tracks": [], "n_bam": 0, "bam_stranded": False, "min_mapq": 0}
    config = (tiny_model / "config.toml").read_text()
    assert "width = 8" in config and "max_duration = 40" in config
    assert "intron+" in config and "file =" not in config  # the scheme is inline
    assert "gene_basic" in (tiny_model / "MODEL_CARD.md").read_text()


def test_gff3_checker(tmp_path):
    """check_gff3 accepts the reference annotation (phases on both strands) and catches a wrong
    phase, so the checks on predictions below test something."""
    reference = DATA / "mini.gff3"
    check_gff3(reference, fasta_lengths(DATA / "mini.fa"), line_sorted=False)
    text = reference.read_text()
    wrong = tmp_path / "wrong.gff3"
    wrong.write_text(text.replace("\t-\t2\tID=g3896.t1.cds", "\t-\t0\tID=g3896.t1.cds"))
    assert wrong.read_text() != text
    with pytest.raises(AssertionError, match="phase"):
        check_gff3(wrong, fasta_lengths(DATA / "mini.fa"), line_sorted=False)


def test_annotate_gff3(annotated, mini):
    check_gff3(annotated["gff3"], fasta_lengths(mini["fa"]))


def test_annotate_gff3_passes_gt(annotated):
    gt = shutil.which("gt")
    if gt is None:
        pytest.skip("genometools `gt` not installed")
    proc = subprocess.run([gt, "gff3validator", str(annotated["gff3"])], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_annotate_bed9(annotated, mini):
    lengths = fasta_lengths(mini["fa"])
    rows = [line.split("\t") for line in annotated["bed"].read_text().splitlines()
            if line and not line.startswith(("#", "track", "browser"))]
    assert rows, "an annotation with no segment at all from this model is suspicious"
    labels = {"exon+", "intron+", "exon-", "intron-"}  # background (intergenic) is left out
    for row in rows:
        assert len(row) == 9, row
        seqid, start, end, name, score, strand, thick_start, thick_end, rgb = row
        assert 0 <= int(start) < int(end) <= lengths[seqid]  # 0-based half-open
        assert name in labels
        assert 0 <= int(score) <= 1000
        assert strand == name[-1]
        assert (int(thick_start), int(thick_end)) == (int(start), int(end))
        assert len(rgb.split(",")) == 3


def test_annotate_posteriors_hdf5(annotated, mini):
    import h5py

    lengths = fasta_lengths(mini["fa"])
    with h5py.File(annotated["h5"], "r") as h5:
        labels = [str(x) for x in h5.attrs["labels"]]
        assert labels == ["intergenic", "exon+", "intron+", "exon-", "intron-"]
        assert set(h5) == set(lengths)
        for seqid, n in lengths.items():
            post = h5[f"{seqid}/label_posterior"]
            assert post.shape == (n, len(labels)) and post.dtype == np.float16
            values = post[:].astype(np.float64)
            assert values.min() >= 0 and values.max() <= 1 + 1e-3
            # float16 storage keeps ~3 significant digits per value: rows sum to 1 within 1e-2.
            np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-2)
            boundary = h5[f"{seqid}/boundary_posterior"][:].astype(np.float64)
            assert boundary.shape == (n,) and boundary.min() >= 0 and boundary.max() <= 1 + 1e-3


def test_annotate_posteriors_bigwig(annotated, mini):
    import h5py
    import pyBigWig

    lengths = fasta_lengths(mini["fa"])
    prefix = str(annotated["prefix"])
    names = ["intergenic", "exonplus", "intronplus", "exonminus", "intronminus"]
    totals = {s: np.zeros(n) for s, n in lengths.items()}
    with h5py.File(annotated["h5"], "r") as h5:
        for c, name in enumerate(names):
            bw = pyBigWig.open(f"{prefix}.{name}.bw")
            try:
                assert bw.chroms() == lengths  # chrom sizes from the FASTA
                for seqid, n in lengths.items():
                    values = np.asarray(bw.values(seqid, 0, n))
                    assert not np.isnan(values).any()
                    totals[seqid] += values
                    # bigWig holds values rounded to 3 decimals; HDF5 holds float16
                    np.testing.assert_allclose(values, h5[f"{seqid}/label_posterior"][:, c],
                                               atol=2e-3)
            finally:
                bw.close()
    for seqid, total in totals.items():
        np.testing.assert_allclose(total, 1.0, atol=1e-2)  # rounded per track, 5 tracks
    bw = pyBigWig.open(f"{prefix}.boundary.bw")
    assert bw.chroms() == lengths
    bw.close()
    for name in names + ["boundary"]:
        assert Path(f"{prefix}.{name}.bedGraph").is_file()


def test_annotate_to_stdout(mini, tiny_model, annotated):
    result = invoke("annotate", mini["fa"], "-m", tiny_model, "-q")
    assert result.stdout.startswith("##gff-version 3\n")
    # Same model, same genome: the same records as the -o run.
    assert result.stdout == annotated["gff3"].read_text()
    assert "genoseg:" in result.stderr and "##gff-version" not in result.stderr


def test_annotate_is_deterministic_across_window_sizes(mini, tiny_model, tmp_path):
    """Stitched windows have no seams: a window covering each whole contig gives the same
    GFF3 as the 600-bp windows of the tiny config."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    config = model / "config.toml"
    config.write_text(config.read_text().replace("window = 600", "window = 5000"))
    whole = tmp_path / "whole.gff3"
    invoke("annotate", mini["fa"], "-m", model, "-o", whole, "-q")
    windowed = tmp_path / "windowed.gff3"
    invoke("annotate", mini["fa"], "-m", tiny_model, "-o", windowed, "-q")
    assert whole.read_text() == windowed.read_text()


@pytest.mark.skipif(not all((DEFAULT_MODEL / f).is_file() for f in MODEL_FILES),
                    reason="the shipped default model (genoseg/models/default) is not there yet")
def test_annotate_with_default_model(mini, tmp_path):
    """The shipped model (codon-phase grammar) finds genes in the mini genome, and every one is
    a valid gene model on its contig: ATG .. stop, no in-frame stop, canonical splice sites."""
    import pysam

    from genoseg.io.gff3 import read_gene_models
    from genoseg.labels import codons
    from genoseg.labels.phase import transcript_segments, violations

    out = tmp_path / "mini.gff3"
    invoke("annotate", mini["fa"], "-o", out, "-q")
    check_gff3(out, fasta_lengths(mini["fa"]))
    fasta = pysam.FastaFile(str(mini["fa"]))
    genes = read_gene_models(out)
    assert len(genes) >= 1
    for tx in genes:
        codes = codons.encode(fasta.fetch(tx.seqid))
        assert violations(codes, transcript_segments(tx, codes)) == [], tx.transcript_id


def test_intergenic_bias_trades_genes_for_intergenic_sequence(mini, tmp_path):
    """--intergenic-bias adds nats per base to the intergenic score: a large one leaves no gene
    in the mini genome where the default model finds some; out-of-range values are a one-line
    error that writes nothing."""
    from genoseg.io.gff3 import read_gene_models

    counts = {}
    for bias in ("0", "1.0"):
        out = tmp_path / f"bias{bias}.gff3"
        invoke("annotate", mini["fa"], "-o", out, "-q", "--intergenic-bias", bias)
        check_gff3(out, fasta_lengths(mini["fa"]))
        counts[bias] = len(read_gene_models(out))
    assert counts["0"] >= 1 and counts["1.0"] == 0, counts
    code, stdout, stderr = run_main("annotate", mini["fa"], "-o", tmp_path / "bad.gff3",
                                    "--intergenic-bias", "5")
    assert "--intergenic-bias" in assert_one_line_error(code, stdout, stderr)
    assert not (tmp_path / "bad.gff3").exists()


def test_intron_penalty_shortens_introns_and_checks_its_range(mini, tmp_path):
    """--intron-penalty subtracts nats per base from the intron score: the predicted gene
    models hold fewer intron bases than with no penalty, and a large penalty leaves none but
    keeps a single-exon gene (exons are not penalised, unlike with --intergenic-bias 1.0,
    which leaves no gene); out-of-range values get a one-line error."""
    from genoseg.io.gff3 import read_gene_models

    def intron_bases(path):
        total = 0
        for tx in read_gene_models(path):
            cds = sorted((int(s), int(e)) for s, e in tx.cds)
            total += sum(b[0] - a[1] for a, b in zip(cds, cds[1:]))
        return total

    bases, genes = {}, {}
    for penalty in ("0", "0.05", "1.0"):
        out = tmp_path / f"pen{penalty}.gff3"
        invoke("annotate", mini["fa"], "-o", out, "-q", "--intergenic-bias", "0",
               "--intron-penalty", penalty)
        check_gff3(out, fasta_lengths(mini["fa"]))
        bases[penalty] = intron_bases(out)
        genes[penalty] = len(read_gene_models(out))
    assert bases["0"] > bases["0.05"] > bases["1.0"] == 0, bases
    assert genes["1.0"] >= 1, genes
    code, stdout, stderr = run_main("annotate", mini["fa"], "-o", tmp_path / "bad.gff3",
                                    "--intron-penalty", "-3")
    assert "--intron-penalty" in assert_one_line_error(code, stdout, stderr)
    assert not (tmp_path / "bad.gff3").exists()


def test_min_gene_score_leaves_out_low_scoring_genes(tmp_path):
    """--min-gene-score P keeps exactly the gene models of the unfiltered run that score at
    least P (same coordinates, renumbered), drops their segments from the BED, and checks its
    range with a one-line error."""
    from genoseg.io.gff3 import read_gene_models

    fa = REPO / "examples/dmel_tiny.fa"
    runs = {}
    for p in ("0", "0.9"):
        out, bed = tmp_path / f"p{p}.gff3", tmp_path / f"p{p}.bed"
        invoke("annotate", fa, "-o", out, "--bed", bed, "-q", "--min-gene-score", p)
        check_gff3(out, fasta_lengths(fa))
        runs[p] = (read_gene_models(out), bed_rows(bed))
    genes, kept = runs["0"][0], runs["0.9"][0]
    key = lambda t: (t.seqid, t.strand, t.cds)  # noqa: E731
    assert all(t.score is not None for t in genes)
    expected = [key(t) for t in genes if t.score >= 0.9]
    assert 0 < len(expected) < len(genes), [t.score for t in genes]  # the threshold bites
    assert [key(t) for t in kept] == expected
    left_out = [(t.seqid, t.start, t.end) for t in genes if t.score < 0.9]
    inside = lambda row, g: row[0] == g[0] and g[1] <= row[1] and row[2] <= g[2]  # noqa: E731
    full_bed, filtered_bed = runs["0"][1], runs["0.9"][1]
    assert [r for r in full_bed if not any(inside(r, g) for g in left_out)] == filtered_bed
    assert len(filtered_bed) < len(full_bed)
    code, stdout, stderr = run_main("annotate", fa, "-o", tmp_path / "bad.gff3",
                                    "--min-gene-score", "1.5")
    assert "must lie in [0, 1]" in assert_one_line_error(code, stdout, stderr)
    assert not (tmp_path / "bad.gff3").exists()


def test_orf_start_bonus_moves_starts_to_orf_openers_and_checks_its_range(tmp_path):
    """--orf-start-bonus adds nats to the start codons that open their longest ORF: with a
    bonus more predicted genes start at one than with a malus, and every gene model stays
    valid; an out-of-range value is a one-line error that writes nothing."""
    import pysam

    from genoseg.io.gff3 import read_gene_models
    from genoseg.labels import codons

    fa = REPO / "examples/dmel_tiny.fa"
    first = {r.name: codons.first_orf_starts(codons.encode(r.sequence))
             for r in pysam.FastxFile(str(fa))}

    def at_orf_openers(path):
        n = 0
        for t in read_gene_models(path):
            if t.strand == "+":
                n += bool(first[t.seqid]["plus"][t.cds[0][0]])
            else:
                n += bool(first[t.seqid]["minus"][t.cds[-1][1] - 1])
        return n

    counts = {}
    for bonus in ("-5", "0", "5"):
        out = tmp_path / f"b{bonus}.gff3"
        invoke("annotate", fa, "-o", out, "-q", "--orf-start-bonus", bonus)
        check_gff3(out, fasta_lengths(fa))
        counts[bonus] = at_orf_openers(out)
    assert counts["-5"] <= counts["0"] <= counts["5"] and counts["-5"] < counts["5"], counts
    code, stdout, stderr = run_main("annotate", fa, "-o", tmp_path / "bad.gff3",
                                    "--orf-start-bonus", "50")
    assert "[-20, 20]" in assert_one_line_error(code, stdout, stderr)
    assert not (tmp_path / "bad.gff3").exists()


def test_rc_average_flag_and_config_key(mini, tmp_path):
    """--rc-average changes the scores decoded (the GFF3 differs from the plain run), is the
    same as ``[annotate] rc_average = true`` in the model's config, and --no-rc-average turns
    that back off."""
    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL, model)
    config = model / "config.toml"
    config.write_text(config.read_text().replace('gene_model = "complete"\n',
                                                 'gene_model = "complete"\nrc_average = true\n'))
    assert "rc_average = true" in config.read_text()
    out = {}
    for name, args in (("plain", ()), ("flag", ("--rc-average",)), ("config", ("-m", model)),
                       ("off", ("-m", model, "--no-rc-average"))):
        out[name] = tmp_path / f"{name}.gff3"
        invoke("annotate", mini["fa"], "-o", out[name], "-q", *args)
        check_gff3(out[name], fasta_lengths(mini["fa"]))
    text = {name: path.read_text() for name, path in out.items()}
    assert text["flag"] != text["plain"]
    assert text["config"] == text["flag"] and text["off"] == text["plain"]


def test_rc_average_on_the_example(tmp_path):
    """--rc-average on the shipped example (17 fly gene records, never trained on): valid GFF3
    (gt gff3validator too where installed), every gene a valid gene model, and about as
    accurate as the plain run (8 of the 17 genes and 43 of 57 exons exactly when this test was
    written; the plain run 9 and 45)."""
    import pysam

    from genoseg.evaluate import evaluate, to_dict
    from genoseg.io.gff3 import read_gene_models
    from genoseg.labels import codons
    from genoseg.labels.phase import transcript_segments, violations

    fa = tmp_path / "dmel_tiny.fa"
    shutil.copy(REPO / "examples/dmel_tiny.fa", fa)
    out = tmp_path / "rc.gff3"
    invoke("annotate", fa, "-o", out, "-q", "--rc-average")
    check_gff3(out, fasta_lengths(fa))
    gt = shutil.which("gt")
    if gt is not None:
        proc = subprocess.run([gt, "gff3validator", str(out)], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
    seq = pysam.FastaFile(str(fa))
    genes = read_gene_models(out)
    for tx in genes:
        codes = codons.encode(seq.fetch(tx.seqid))
        assert violations(codes, transcript_segments(tx, codes)) == [], tx.transcript_id
    levels = to_dict(evaluate(REPO / "examples/dmel_tiny.gff3", out))["levels"]
    assert levels["gene"]["reference"] == 17 and levels["exon"]["reference"] == 57
    assert levels["gene"]["tp"] >= 7 and levels["exon"]["tp"] >= 40, levels


def test_gene_model_complete_keeps_contig_ends_intergenic(mini, tiny_model, tmp_path):
    """By default (complete gene models) every contig starts and ends between genes: the
    posteriors give intergenic probability 1 at both ends. --gene-model partial lets a contig
    end cut a gene; both write valid GFF3. On a model without gene grammar it is a one-line
    error."""
    import h5py

    for mode in ("complete", "partial"):
        out = tmp_path / f"{mode}.gff3"
        invoke("annotate", mini["fa"], "-o", out, "-q", "--gene-model", mode,
               "--posteriors", tmp_path / mode)
        check_gff3(out, fasta_lengths(mini["fa"]))
    with h5py.File(tmp_path / "complete.h5") as h5:
        for seqid in fasta_lengths(mini["fa"]):
            post = h5[seqid]["label_posterior"][:]
            assert post[0, 0] == pytest.approx(1.0, abs=1e-3), seqid
            assert post[-1, 0] == pytest.approx(1.0, abs=1e-3), seqid
    code, stdout, stderr = run_main("annotate", mini["fa"], "-m", tiny_model, "-o",
                                    tmp_path / "generic.gff3", "--gene-model", "partial")
    assert "--gene-model" in assert_one_line_error(code, stdout, stderr)
    assert not (tmp_path / "generic.gff3").exists()


def _translate(cds: str) -> str:
    """The standard genetic code over the complete codons of ``cds``."""
    amino = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"  # TCAG order
    index = {"T": 0, "C": 1, "A": 2, "G": 3}
    return "".join(amino[16 * index[cds[i]] + 4 * index[cds[i + 1]] + index[cds[i + 2]]]
                   for i in range(0, len(cds) - 2, 3))


@pytest.mark.skipif(not all((DEFAULT_MODEL / f).is_file() for f in MODEL_FILES),
                    reason="the shipped default model (genoseg/models/default) is not there yet")
def test_gene_model_partial_writes_genes_cut_by_contig_ends(tmp_path, monkeypatch):
    """--gene-model partial on three example fly records cut inside their genes, as a draft
    assembly cuts them: the shipped model's genes that run off a contig end are in the GFF3 as
    partial gene models (NCBI's partial=true and start_range / end_range, checked phases, gt
    valid), each translating from its 5' phase with no stop inside; the + gene cut in its last
    exon and the - gene cut in its 3' exon are the reference genes clipped to the contig.
    --gene-model complete leaves them all out; the memory-lean Viterbi of long contigs writes
    the same partial genes."""
    import pysam

    from genoseg.io.gff3 import read_gene_models

    whole = pysam.FastaFile(str(REPO / "examples/dmel_tiny.fa"))
    cuts = {"plus_cut3": ("chr2R_891723-893801", 0, 1700),
            "minus_cut3": ("chr2R_564005-568684", 1000, 4680),
            "minus_cut5": ("chr2R_564005-568684", 0, 3000)}
    seqs = {name: whole.fetch(rec)[a:b] for name, (rec, a, b) in cuts.items()}
    fa = tmp_path / "cut.fa"
    fa.write_text("".join(f">{name}\n{seq}\n" for name, seq in seqs.items()))
    out = {}
    for mode in ("partial", "complete"):
        out[mode] = tmp_path / f"{mode}.gff3"
        invoke("annotate", fa, "-o", out[mode], "-q", "--gene-model", mode)
        check_gff3(out[mode], fasta_lengths(fa))
    gt = shutil.which("gt")
    if gt is not None:
        proc = subprocess.run([gt, "gff3validator", str(out["partial"])], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    assert "partial" not in out["complete"].read_text()
    genes = {t.seqid: t for t in read_gene_models(out["partial"]) if t.partial}
    assert sorted(genes) == sorted(cuts)
    for name, t in genes.items():
        cds = "".join(seqs[name][s:e] for s, e in t.cds)
        if t.strand == "-":
            cds = cds[::-1].translate(str.maketrans("ACGT", "TGCA"))
        peptide = _translate(cds[t.phase5:])
        assert "*" not in peptide[:-1] and peptide.endswith("*") == (not t.partial3), name
        assert t.partial5 or cds.startswith("ATG"), name
    reference = {(t.seqid, t.strand): t.cds for t in read_gene_models(REPO / "examples/dmel_tiny.gff3")}
    for name, strand in (("plus_cut3", "+"), ("minus_cut3", "-")):
        rec, a, b = cuts[name]
        clipped = tuple((max(s, a) - a, min(e, b) - a) for s, e in reference[(rec, strand)]
                        if e > a and s < b)
        t = genes[name]
        assert (t.strand, t.cds, t.partial5, t.partial3, t.phase5) == (
            strand, clipped, False, True, 0), name
    gene_lines = [line.split("\t") for line in out["partial"].read_text().splitlines()
                  if "\tgene\t" in line]
    marks = {cols[0]: attributes(cols[8]) for cols in gene_lines if "partial" in cols[8]}
    assert marks["plus_cut3"]["end_range"] == "1700,." and "start_range" not in marks["plus_cut3"]
    assert marks["minus_cut3"]["start_range"] == ".,1" and "end_range" not in marks["minus_cut3"]
    assert marks["minus_cut5"]["end_range"] == "3000,."

    from genoseg.annotate import pipeline

    monkeypatch.setattr(pipeline, "LEAN_MIN_LENGTH", 100)
    monkeypatch.setattr(pipeline, "PACK_CELLS", 80)  # one contig per group
    lean = tmp_path / "lean.gff3"
    invoke("annotate", fa, "-o", lean, "-q", "--gene-model", "partial")

    def body(path):  # feature lines without the score column (the lean path has none)
        return [line.split("\t")[:5] + line.split("\t")[6:]
                for line in path.read_text().splitlines() if line and not line.startswith("#")]

    assert body(lean) == body(out["partial"])
    assert {line.split("\t")[5] for line in lean.read_text().splitlines()
            if "\tgene\t" in line} == {"."}  # no posteriors: it took the lean path


def test_biased_emissions_shifts_the_intergenic_column_only(tiny_model):
    import torch

    from genoseg.annotate.pipeline import biased_emissions
    from genoseg.config import override
    from genoseg.models import load_model

    model, _ = load_model(tiny_model)
    em = torch.randn(7, model.n_outputs)
    assert torch.equal(biased_emissions(model, em.clone()), em)
    model.config = override(model.config, {"annotate.intergenic_bias": 0.25})
    shifted = biased_emissions(model, em.clone())
    column = model.config.scheme.labels.index("intergenic")
    assert torch.allclose(shifted[:, column], em[:, column] + 0.25)
    others = [c for c in range(em.shape[1]) if c != column]
    assert torch.equal(shifted[:, others], em[:, others])


def test_shipped_yeast_model_finds_the_example_genes(tmp_path):
    """The shipped yeast model on 30 kb of chrXIII (a chromosome it was not trained on): valid
    gene models, and most of the 12 reference genes exactly (10 when it was shipped)."""
    import pysam

    from genoseg.evaluate import evaluate, to_dict
    from genoseg.io.gff3 import read_gene_models
    from genoseg.labels import codons
    from genoseg.labels.phase import transcript_segments, violations

    fa = tmp_path / "scer.fa"
    shutil.copy(REPO / "examples/scer_chrXIII_30kb.fa", fa)
    out = tmp_path / "scer.gff3"
    invoke("annotate", fa, "-m", "yeast", "-o", out, "-q")
    seq = pysam.FastaFile(str(fa))
    for tx in read_gene_models(out):
        codes = codons.encode(seq.fetch(tx.seqid))
        assert violations(codes, transcript_segments(tx, codes)) == [], tx.transcript_id
    gene = to_dict(evaluate(REPO / "examples/scer_chrXIII_30kb.gff3", out))["levels"]["gene"]
    assert gene["reference"] == 12
    assert gene["tp"] >= 9, gene


# ------------------------------------------------------------------------------------------------
# Resume


def _state(path: Path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def test_interrupted_training_resumes_to_the_same_weights(mini, tiny_model, tmp_path,
                                                          monkeypatch):
    from genoseg.training.data import WindowSampler

    out = tmp_path / "model"
    real_batch = WindowSampler.batch
    calls = {"n": 0}

    def dies_at_step_3(self, batch_size):
        calls["n"] += 1
        if calls["n"] == 3:  # after the step-2 checkpoint (checkpoint_every = 2)
            raise KeyboardInterrupt
        return real_batch(self, batch_size)

    monkeypatch.setattr(WindowSampler, "batch", dies_at_step_3)
    args = ["train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG, "-o", out, "-q"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code != 0
    assert (out / "checkpoint.pt").is_file()
    assert not (out / "weights.pt").exists()  # no model dir claims to be finished

    monkeypatch.setattr(WindowSampler, "batch", real_batch)
    invoke(*args)
    meta = json.loads((out / "model.json").read_text())
    assert meta["metrics"]["steps"] == 4
    resumed, straight = _state(out / "weights.pt"), _state(tiny_model / "weights.pt")
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert np.array_equal(resumed[key].numpy(), straight[key].numpy()), key


def test_weight_average_resumes_to_the_same_weights(mini, tmp_path, monkeypatch):
    """[train] ema_decay: the averaged weights are checkpointed, so a run interrupted after its
    step-2 checkpoint and resumed writes the same model as one straight run; the written
    weights are the average, not the last step's."""
    import torch

    from genoseg.training.data import WindowSampler

    config = tmp_path / "ema.toml"
    text = TINY_CONFIG.read_text().replace('file = "../schemes/',
                                           f'file = "{REPO}/configs/schemes/')
    config.write_text(text.replace("[train]\n", "[train]\nema_decay = 0.5\n"))
    args = ["train", "-g", mini["fa"], "-a", mini["gff3"], "-c", config, "-q"]
    invoke(*args, "-o", tmp_path / "straight")
    real_batch = WindowSampler.batch
    calls = {"n": 0}

    def dies_at_step_3(self, batch_size):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_batch(self, batch_size)

    monkeypatch.setattr(WindowSampler, "batch", dies_at_step_3)
    assert CliRunner().invoke(cli, [str(a) for a in [*args, "-o", tmp_path / "resumed"]]
                              ).exit_code != 0
    monkeypatch.setattr(WindowSampler, "batch", real_batch)
    invoke(*args, "-o", tmp_path / "resumed")
    straight, resumed = (_state(tmp_path / d / "weights.pt") for d in ("straight", "resumed"))
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    ckpt = torch.load(tmp_path / "straight" / "checkpoint.pt", map_location="cpu",
                      weights_only=False)
    last, averaged = ckpt["model"], ckpt["averaged"]
    weights = [k for k in last if last[k].is_floating_point()]
    assert any(not torch.equal(last[k], averaged[k]) for k in weights)
    best_step = ckpt["state"]["best"]["step"]
    if best_step == 4:  # the model written is the average at its best validation step
        assert all(torch.equal(averaged[k], straight[k]) for k in weights)


def test_checkpoint_from_before_a_new_config_key_resumes(mini, tiny_model, tmp_path):
    """A checkpoint whose stored config lacks keys added to genoseg since (here
    [train] ema_decay and [annotate] gene_model) resumes when the new keys hold their
    defaults."""
    import torch

    out = tmp_path / "model"
    shutil.copytree(tiny_model, out)
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    del ckpt["config"]["train"]["ema_decay"]
    del ckpt["config"]["annotate"]["gene_model"]
    torch.save(ckpt, out / "checkpoint.pt")
    invoke("train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG, "-o", out, "-q",
           "--steps", "6")
    assert json.loads((out / "model.json").read_text())["metrics"]["steps"] == 6


def test_rerun_after_completion_is_a_no_op(mini, tiny_model, tmp_path, monkeypatch):
    """The same command on a finished model directory trains no step and rewrites the same
    weights (it only refreshes the metadata's date)."""
    from genoseg.training.data import WindowSampler

    out = tmp_path / "model"
    shutil.copytree(tiny_model, out)
    before = sha256(out / "weights.pt")

    def no_training(self, batch_size):
        raise AssertionError("a finished run must not train again")

    monkeypatch.setattr(WindowSampler, "batch", no_training)
    invoke("train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG, "-o", out, "-q")
    assert sha256(out / "weights.pt") == before
    assert json.loads((out / "model.json").read_text())["metrics"]["steps"] == 4


def test_resume_with_another_config_is_refused(mini, tiny_model, tmp_path):
    """The checkpoint belongs to one config, so a rerun with a setting changed (here the seed)
    is refused in one line that names the change, and nothing is touched."""
    out = tmp_path / "model"
    shutil.copytree(tiny_model, out)
    before = {p.name: sha256(p) for p in out.iterdir()}
    code, stdout, stderr = run_main("train", "-g", mini["fa"], "-a", mini["gff3"], "-c",
                                    TINY_CONFIG, "-o", out, "-q", "--seed", "7")
    line = assert_one_line_error(code, stdout, stderr)
    assert "checkpoint was made with another config" in line
    assert "[train] seed 0 -> 7" in line
    assert {p.name: sha256(p) for p in out.iterdir()} == before


def test_resume_with_more_steps_continues(mini, tiny_model, tmp_path):
    """--steps may change on resume (a run is extended): training goes on from the checkpoint's
    step to the new total."""
    out = tmp_path / "model"
    shutil.copytree(tiny_model, out)
    invoke("train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG, "-o", out, "-q",
           "--steps", "6")
    meta = json.loads((out / "model.json").read_text())
    assert meta["metrics"]["steps"] == 6


def test_resume_on_another_device_continues(mini, tiny_model, tmp_path):
    """--device may change on resume too (a run started on a GPU finishes on a CPU): the
    checkpoint's config is compared without steps and device."""
    out = tmp_path / "model"
    shutil.copytree(tiny_model, out)
    invoke("train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG, "-o", out, "-q",
           "--steps", "5", "--device", "auto")
    assert json.loads((out / "model.json").read_text())["metrics"]["steps"] == 5


def test_validation_accuracy_counts_labelled_bases_only(mini, tiny_model, monkeypatch):
    """Viterbi accuracy is over the labelled bases of every window, also those whose labelling
    the model forbids (their NLL is left out): it can never exceed 1."""
    import torch

    from genoseg.inputs import InputSource
    from genoseg.models import load_model
    from genoseg.training.data import gold_labels, tile_regions
    from genoseg.training.data import Region
    from genoseg.training.loop import evaluate

    model, _ = load_model(tiny_model)
    source = InputSource(mini["fa"])
    labels, _ = gold_labels(mini["gff3"], model.config.scheme, source.lengths)
    name = next(iter(labels))
    labels[name][:] = 0
    labels[name][: len(labels[name]) // 2] = -1  # half the sequence unlabelled
    windows = tile_regions([Region(name, 0, source.lengths[name])], 300)
    real_nll = type(model.head).nll

    def none_possible(self, *args, **kwargs):
        nll, ok = real_nll(self, *args, **kwargs)
        return nll, torch.zeros_like(ok)

    def all_class_zero(self, emissions, lengths, **kwargs):
        rows = [torch.tensor([[0, int(n), 0]]) for n in lengths.tolist()]
        return torch.zeros(len(rows)), rows

    monkeypatch.setattr(type(model.head), "nll", none_possible)
    monkeypatch.setattr(type(model.head), "decode", all_class_zero)
    metrics = evaluate(model, source, labels, windows, torch.device("cpu"), 4)
    assert metrics["val_accuracy"] == 1.0  # every labelled base right, unlabelled ones ignored
    assert metrics["val_nll_per_base"] == 0.0  # no window counted
    source.close()


# ------------------------------------------------------------------------------------------------
# Bad inputs: one line on stderr, non-zero exit, no traceback, nothing written


@pytest.mark.parametrize("command", ["train", "annotate"])
@pytest.mark.parametrize("genome,message", [
    ("missing.fa", "FASTA file not found"),
    ("empty.fa", "empty FASTA"),
    ("nondna.fa", "invalid character 'J'"),
    ("duplicate.fa", "duplicate sequence ID 'a'"),
    ("binary.fa", "not a FASTA file"),
])
def test_bad_genome(command, genome, message, bad_inputs, mini, tiny_model, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if command == "train":
        args = ["train", "-g", bad_inputs / genome, "-a", mini["gff3"], "-c", TINY_CONFIG,
                "-o", out_dir / "model", "-q"]
    else:
        args = ["annotate", bad_inputs / genome, "-m", tiny_model, "-o", out_dir / "pred.gff3",
                "--bed", out_dir / "pred.bed", "--posteriors", out_dir / "post", "-q"]
    line = assert_one_line_error(*run_main(*args))
    assert message in line and genome in line
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("annotation,message", [
    ("malformed.gff3", "malformed.gff3:7: expected 9 tab-separated columns"),
    ("otherseqs.gff3", "no annotated sequence is in the genome"),
    ("missing.gff3", "annotation file not found"),
])
def test_bad_annotation(annotation, message, bad_inputs, mini, tmp_path):
    line = assert_one_line_error(*run_main(
        "train", "-g", mini["fa"], "-a", bad_inputs / annotation, "-c", TINY_CONFIG,
        "-o", tmp_path / "model", "-q"))
    assert message in line
    assert not (tmp_path / "model").exists()


def test_config_with_unknown_key(bad_inputs, mini, tmp_path):
    line = assert_one_line_error(*run_main(
        "train", "-g", mini["fa"], "-a", mini["gff3"], "-c", bad_inputs / "unknown_key.toml",
        "-o", tmp_path / "model", "-q"))
    assert "[train] stepz: unknown key" in line
    assert not (tmp_path / "model").exists()


def test_model_missing_weights(mini, tiny_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "weights.pt").unlink()
    out = tmp_path / "out"
    out.mkdir()
    line = assert_one_line_error(*run_main("annotate", mini["fa"], "-m", model,
                                           "-o", out / "pred.gff3", "-q"))
    assert "not a genoseg model directory (missing weights.pt)" in line
    assert list(out.iterdir()) == []


def test_model_weights_do_not_match_config(mini, tiny_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    config = model / "config.toml"
    config.write_text(config.read_text().replace("width = 8", "width = 16"))
    out = tmp_path / "out"
    out.mkdir()
    line = assert_one_line_error(*run_main("annotate", mini["fa"], "-m", model,
                                           "-o", out / "pred.gff3", "-q"))
    assert "weights do not match config.toml" in line and "size mismatch" in line
    assert list(out.iterdir()) == []


def test_model_weights_damaged(mini, tiny_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    with open(model / "weights.pt", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\0" * 16)
    line = assert_one_line_error(*run_main("annotate", mini["fa"], "-m", model, "-q"))
    assert "does not match the checksum" in line


def test_unknown_shipped_model(mini, tmp_path):
    line = assert_one_line_error(*run_main("annotate", mini["fa"], "-m", "no_such_model",
                                           "-o", tmp_path / "pred.gff3", "-q"))
    assert "no_such_model: no such model directory or shipped model" in line
    assert list(tmp_path.iterdir()) == []


def _device_args(command, device, mini, tiny_model, out):
    """train or annotate on the mini genome with --device DEVICE, writing under out."""
    if command == "train":
        return ["train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG,
                "-o", out / "model", "--device", device, "-q"]
    return ["annotate", mini["fa"], "-m", tiny_model, "-o", out / "pred.gff3",
            "--device", device, "-q"]


@pytest.mark.parametrize("command", ["train", "annotate"])
def test_cuda_without_cuda(command, mini, tiny_model, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    line = assert_one_line_error(*run_main(*_device_args(command, "cuda", mini, tiny_model,
                                                         tmp_path)))
    assert "CUDA is not available" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["train", "annotate"])
def test_unknown_device_is_a_one_line_error(command, mini, tiny_model, tmp_path):
    line = assert_one_line_error(*run_main(*_device_args(command, "gpu0", mini, tiny_model,
                                                         tmp_path)))
    # train checks it as the config's [train] device, annotate in pick_device
    assert "device" in line and "'gpu0'" in line and "cuda" in line, line
    assert list(tmp_path.iterdir()) == []


def test_usage_errors(mini, tiny_model, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    before = {p.name for p in tmp_path.iterdir()}
    # --bedgraph without --posteriors; a missing required option; an unknown subcommand;
    # outputs that cannot be written (refused before any work)
    for args in (["annotate", mini["fa"], "-m", tiny_model, "--bedgraph", "-o",
                  tmp_path / "x.gff3"],
                 ["train", "-a", mini["gff3"], "-c", TINY_CONFIG, "-o", tmp_path / "m"],
                 ["frobnicate"],
                 ["annotate", mini["fa"], "-m", tiny_model, "--posteriors", a_file / "post"],
                 ["annotate", mini["fa"], "-m", tiny_model, "--bed", a_file / "sub" / "x.bed"],
                 ["train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG,
                  "-o", a_file / "model"],
                 ["train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG,
                  "-o", a_file]):
        code, out, err = run_main(*args)
        assert code == 2, (args, err)
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("Error:"), err
        assert out == ""
    assert_nothing_left(tmp_path, before)


# ------------------------------------------------------------------------------------------------
# What a user sees from a real process


def test_subprocess_bad_genome(tiny_model, tmp_path):
    out = tmp_path / "pred.gff3"
    proc = subprocess_genoseg("annotate", tmp_path / "missing.fa", "-m", tiny_model, "-o", out)
    assert proc.returncode == 1
    line = assert_one_line_error(proc.returncode, proc.stdout, proc.stderr)
    assert "missing.fa: FASTA file not found" in line
    assert not out.exists()


def test_subprocess_bad_config(bad_inputs, mini, tmp_path):
    proc = subprocess_genoseg("train", "-g", mini["fa"], "-a", mini["gff3"], "-c",
                              bad_inputs / "unknown_key.toml", "-o", tmp_path / "model")
    assert proc.returncode == 1
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr)
    assert not (tmp_path / "model").exists()


def test_subprocess_usage_error():
    proc = subprocess_genoseg("annotate")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: Missing argument")


def test_subprocess_models_show_unknown():
    proc = subprocess_genoseg("models", "show", "no_such_model")
    assert proc.returncode == 1
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr)


# ------------------------------------------------------------------------------------------------
# genoseg models


def test_models_average_writes_the_mean_of_the_weights(mini, tiny_model, tmp_path):
    """genoseg models average: the element-wise mean of the weights of models of one
    architecture, loadable and usable by annotate, with its sources in model.json; one model,
    or models of different architectures, are a one-line error that writes nothing."""
    import torch

    other = tmp_path / "seed7"
    invoke("train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG, "-o", other, "-q",
           "--seed", "7")
    out = tmp_path / "soup"
    invoke("models", "average", tiny_model, other, "-o", out)
    a, b, mean = (_state(d / "weights.pt") for d in (tiny_model, other, out))
    assert a.keys() == mean.keys()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    for key in a:
        if a[key].is_floating_point():
            expect = ((a[key].double() + b[key].double()) / 2).to(a[key].dtype)
            assert torch.allclose(mean[key], expect, rtol=0, atol=1e-7), key
    meta = json.loads((out / "model.json").read_text())
    assert [src["weights_sha256"] for src in meta["averaged_from"]] == [
        sha256(tiny_model / "weights.pt"), sha256(other / "weights.pt")]
    invoke("annotate", mini["fa"], "-m", out, "-o", tmp_path / "soup.gff3", "-q")
    check_gff3(tmp_path / "soup.gff3", fasta_lengths(mini["fa"]))
    code, stdout, stderr = run_main("models", "average", tiny_model, "-o", tmp_path / "one")
    assert "at least two" in assert_one_line_error(code, stdout, stderr)
    code, stdout, stderr = run_main("models", "average", tiny_model, DEFAULT_MODEL, "-o",
                                    tmp_path / "mixed")
    assert "architecture" in assert_one_line_error(code, stdout, stderr)
    assert not (tmp_path / "one").exists() and not (tmp_path / "mixed").exists()


def test_models_list():
    result = invoke("models", "list")
    lines = [line for line in result.stdout.splitlines() if line]
    complete = all((DEFAULT_MODEL / f).is_file() for f in ("config.toml", "weights.pt",
                                                           "model.json"))
    for line in lines:
        assert len(line.split("\t")) == 3, line  # name, status, summary
    if complete:
        assert any(line.startswith("default (default)\t") for line in lines)


def test_models_show_directory(tiny_model):
    result = invoke("models", "show", tiny_model)
    assert result.stdout == (tiny_model / "MODEL_CARD.md").read_text() + "\n"
    assert result.stdout.startswith("# genoseg model: gene_basic")


def test_models_show_not_a_model(tmp_path):
    line = assert_one_line_error(*run_main("models", "show", tmp_path))
    assert "not a genoseg model directory" in line


# ------------------------------------------------------------------------------------------------
# Semi-CRF backend (--backend, GENOSEG_BACKEND)


def test_annotate_backend_torch(mini, tiny_model, annotated, tmp_path, monkeypatch, caplog):
    import logging

    caplog.set_level(logging.INFO)
    monkeypatch.setenv("GENOSEG_BACKEND", "triton")  # the option wins over the environment
    out = tmp_path / "pred.gff3"
    invoke("annotate", mini["fa"], "-m", tiny_model, "-o", out, "--backend", "torch", "-q")
    # `annotated` ran under the default (auto) on the CPU: the same reference, the same records.
    assert out.read_text() == annotated["gff3"].read_text()
    assert "semi-CRF backend: torch reference (cpu)" in caplog.messages


def test_model_records_its_backend(tiny_model):
    import torch

    meta = json.loads((tiny_model / "model.json").read_text())
    assert meta["crf_backend"] in ("torch", "triton")
    if not torch.cuda.is_available():
        assert meta["crf_backend"] == "torch"


@pytest.mark.parametrize("command", ["train", "annotate"])
def test_backend_triton_without_cuda(command, mini, tiny_model, tmp_path):
    import torch

    if command == "train":
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here (train's device is auto)")
        args = ["train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG,
                "-o", tmp_path / "model", "--backend", "triton", "-q"]
    else:  # annotate's device is cpu unless told otherwise
        args = ["annotate", mini["fa"], "-m", tiny_model, "-o", tmp_path / "pred.gff3",
                "--backend", "triton", "-q"]
    line = assert_one_line_error(*run_main(*args))
    assert "semi-CRF backend 'triton' needs CUDA tensors, got a tensor on cpu" in line
    assert list(tmp_path.iterdir()) == []


def test_backend_from_environment(mini, tiny_model, tmp_path, monkeypatch):
    args = ["annotate", mini["fa"], "-m", tiny_model, "-o", tmp_path / "pred.gff3", "-q"]
    monkeypatch.setenv("GENOSEG_BACKEND", "triton")
    line = assert_one_line_error(*run_main(*args))
    assert "semi-CRF backend 'triton'" in line
    monkeypatch.setenv("GENOSEG_BACKEND", "gpu")
    code, out, err = run_main(*args)
    assert code == 2 and "Traceback" not in err and out == ""
    assert "Invalid value for '--backend'" in err and "'gpu'" in err
    assert list(tmp_path.iterdir()) == []


def test_subprocess_backend_triton_on_cpu(mini, tiny_model, tmp_path):
    out = tmp_path / "pred.gff3"
    proc = subprocess_genoseg("annotate", mini["fa"], "-m", tiny_model, "-o", out,
                              "--device", "cpu", "--backend", "triton")
    assert proc.returncode == 1
    line = assert_one_line_error(proc.returncode, proc.stdout, proc.stderr)
    assert "semi-CRF backend 'triton' needs CUDA tensors" in line
    assert not out.exists()


def test_annotate_backend_cpu(mini, tiny_model, annotated, tmp_path, caplog):
    """The compiled CPU twin (float64) gives the reference's gene models; scores may differ in the
    last printed digit (the reference computes float32 emissions in float32)."""
    import logging

    pytest.importorskip("numba")
    caplog.set_level(logging.INFO)
    out = tmp_path / "pred.gff3"
    invoke("annotate", mini["fa"], "-m", tiny_model, "-o", out, "--backend", "cpu", "-q")
    assert "semi-CRF backend: compiled CPU (numba)" in caplog.messages

    def models(path):
        return [line.split("\t")[:5] + line.split("\t")[6:] for line in
                path.read_text().splitlines() if not line.startswith("#")]

    assert models(out) == models(annotated["gff3"])


# ------------------------------------------------------------------------------------------------
# The codon-phase gene grammar end to end


def test_phase_grammar_trains_and_annotates_valid_genes(mini, tmp_path):
    """A tiny phase-grammar model (2 steps, rc_augment on through the config) trains and
    annotates through the CLI, writing a GFF3 that passes the checks."""
    config = tmp_path / "phase.toml"
    text = (REPO / "configs/models/tiny_phase_test.toml").read_text()
    text = text.replace('file = "../schemes/', f'file = "{REPO}/configs/schemes/')
    config.write_text(text.replace("[train]\n", "[train]\nrc_augment = true\n"))
    model = tmp_path / "model"
    invoke("train", "-g", mini["fa"], "-a", mini["gff3"], "-c", config, "-o", model, "-q",
           "--steps", "2")
    out = tmp_path / "pred.gff3"
    invoke("annotate", mini["fa"], "-m", model, "-o", out, "--bed", tmp_path / "pred.bed", "-q")
    # (After 2 steps the model may predict no complete gene; gene validity is checked with the
    # shipped model in test_annotate_with_default_model.)
    check_gff3(out, fasta_lengths(mini["fa"]))
    assert (tmp_path / "pred.bed").is_file()
    assert json.loads((model / "model.json").read_text())["summary"].startswith(
        "gene_basic scheme, codon-phase grammar")


def test_sequences_option_restricts_annotate_and_train(mini, tiny_model, tmp_path):
    names = list(fasta_lengths(mini["fa"]))
    out = tmp_path / "one.gff3"
    invoke("annotate", mini["fa"], "-m", tiny_model, "-o", out, "--bed", tmp_path / "one.bed",
           "--sequences", names[1], "-q")
    regions = [l.split()[1] for l in out.read_text().splitlines()
               if l.startswith("##sequence-region")]
    assert regions == [names[1]]
    assert {l.split("\t")[0] for l in (tmp_path / "one.bed").read_text().splitlines()
            if l and not l.startswith(("track", "#"))} <= {names[1]}
    code, stdout, stderr = run_main("annotate", mini["fa"], "-m", tiny_model, "-o",
                                    tmp_path / "x.gff3", "--sequences", "chrNope", "-q")
    assert "no sequence 'chrNope'" in assert_one_line_error(code, stdout, stderr)
    assert not (tmp_path / "x.gff3").exists()
    model = tmp_path / "model"
    invoke("train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG, "-o", model, "-q",
           "--sequences", ",".join(names[:2]), "--steps", "2")
    data = json.loads((model / "model.json").read_text())["training_data"]
    assert data["train_sequences"] + data["validation_sequences"] == 2
    code, stdout, stderr = run_main("train", "-g", mini["fa"], "-a", mini["gff3"], "-c",
                                    TINY_CONFIG, "-o", tmp_path / "m2", "--sequences", "chrNope")
    assert "no sequence 'chrNope'" in assert_one_line_error(code, stdout, stderr)


def test_val_sequences_option_holds_out_exactly_those(mini, tmp_path):
    names = list(fasta_lengths(mini["fa"]))
    model = tmp_path / "model"
    invoke("train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG, "-o", model, "-q",
           "--val-sequences", names[-1], "--steps", "2")
    data = json.loads((model / "model.json").read_text())["training_data"]
    lengths = fasta_lengths(mini["fa"])
    assert data["validation_sequences"] == 1
    assert data["validation_bases"] == lengths[names[-1]]
    assert data["train_sequences"] == len(names) - 1
    for args, message in (
            (("--val-sequences", "chrNope"), "no sequence 'chrNope' (--val-sequences"),
            (("--sequences", names[0], "--val-sequences", names[1]),
             f"--val-sequences: {names[1]!r} is not among the --sequences given")):
        code, stdout, stderr = run_main("train", "-g", mini["fa"], "-a", mini["gff3"], "-c",
                                        TINY_CONFIG, "-o", tmp_path / "m2", *args)
        assert message in assert_one_line_error(code, stdout, stderr)
    code, _, stderr = run_main("train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG,
                               "-o", tmp_path / "m2", "--val-sequences", f"{names[0]},{names[0]}")
    assert code == 2 and stderr.strip().splitlines()[-1] == (
        "Error: --val-sequences lists a sequence twice")
    assert not (tmp_path / "m2" / "weights.pt").exists()


def test_long_contigs_on_cpu_take_the_lean_viterbi(mini, tmp_path, monkeypatch):
    """Contigs over LEAN_MIN_LENGTH (2 Mb; lowered here) are decoded by the memory-lean phase
    Viterbi on a CPU: the same gene models as the dense path, without scores; asking for
    posteriors there is a one-line error."""
    from genoseg.annotate import pipeline

    dense = tmp_path / "dense.gff3"
    invoke("annotate", mini["fa"], "-o", dense, "-q")
    monkeypatch.setattr(pipeline, "LEAN_MIN_LENGTH", 100)
    monkeypatch.setattr(pipeline, "PACK_CELLS", 80)  # one contig per group
    lean = tmp_path / "lean.gff3"
    invoke("annotate", mini["fa"], "-o", lean, "--bed", tmp_path / "lean.bed", "-q")
    check_gff3(lean, fasta_lengths(mini["fa"]))

    def body(path):  # feature lines without the score column
        return [l.split("\t")[:5] + l.split("\t")[6:] for l in path.read_text().splitlines()
                if l and not l.startswith("#")]

    assert body(lean) == body(dense) and len(body(dense)) > 0
    assert {l.split("\t")[5] for l in lean.read_text().splitlines()
            if "\tgene\t" in l} == {"."}
    code, stdout, stderr = run_main("annotate", mini["fa"], "-o", tmp_path / "p.gff3",
                                    "--posteriors", tmp_path / "post", "-q")
    assert "need a GPU" in assert_one_line_error(code, stdout, stderr)


def test_lean_viterbi_in_chunks_keeps_the_gene_models(mini, tmp_path, monkeypatch):
    """A long contig's lean Viterbi is scanned in chunks on the cores it is given: the same GFF3
    as one sequential scan, whether every chunk's warm-up reaches its predecessor's state (a
    warm-up from the contig's start) or none does (no warm-up: each chunk scanned again, at
    least once)."""
    from genoseg.annotate import pipeline
    from genoseg.crf import phase_viterbi, threads

    monkeypatch.setattr(pipeline, "LEAN_MIN_LENGTH", 100)
    monkeypatch.setattr(pipeline, "PACK_CELLS", 80)  # one contig per group
    monkeypatch.setattr(pipeline, "lean_workers", lambda lengths: 1)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    monkeypatch.setattr(phase_viterbi, "MIN_CHUNK", 60)
    chunk_runs = []
    real_scan = phase_viterbi.chunked_scan

    def scan(*args):
        end, shift, reruns = real_scan(*args)
        chunk_runs.append((len(phase_viterbi.chunk_bounds(args[1], args[4])) - 1, reruns))
        return end, shift, reruns

    monkeypatch.setattr(phase_viterbi, "chunked_scan", scan)
    outputs = {}
    for name, cores, warmup in (("one", 1, 0), ("from_start", 4, 10**9), ("none", 4, 0)):
        monkeypatch.setattr(threads, "available_cores", lambda c=cores: c)
        monkeypatch.setattr(phase_viterbi, "WARMUP", warmup)
        chunk_runs.clear()
        out = tmp_path / f"{name}.gff3"
        invoke("annotate", mini["fa"], "-o", out, "-q")
        outputs[name] = out.read_text()
        if name == "one":
            assert {n for n, _ in chunk_runs} == {1}
        else:
            assert max(n for n, _ in chunk_runs) == 4
            assert all(r == 0 if warmup else r >= n - 1 for n, r in chunk_runs)
    assert outputs["from_start"] == outputs["one"] == outputs["none"]
    assert "\tgene\t" in outputs["one"]


def test_lean_decodes_overlap_the_encoder_and_keep_the_outputs(mini, tmp_path, monkeypatch):
    """Long contigs: each one's lean Viterbi runs on a worker thread while the encoder scores
    the next, at most ``lean_workers`` at once. One at a time (the encoder of the next still
    beside it) and all at once give the same outputs, in the FASTA's order, every decode but
    the last off the main thread (which runs the encoder; the last has nothing beside it)."""
    import threading

    from genoseg.annotate import pipeline

    monkeypatch.setattr(pipeline, "LEAN_MIN_LENGTH", 100)
    monkeypatch.setattr(pipeline, "PACK_CELLS", 80)  # one contig per group
    n = len(fasta_lengths(mini["fa"]))
    assert n >= 3
    events = []
    real_decode, real_scores = pipeline._lean_decode, pipeline._lean_scores

    def decode(model, seqid, *args):
        events.append(("decode", seqid, threading.current_thread() is threading.main_thread()))
        return real_decode(model, seqid, *args)

    def scores(model, source, seqid, *args):
        events.append(("scores", seqid, True))
        return real_scores(model, source, seqid, *args)

    monkeypatch.setattr(pipeline, "_lean_decode", decode)
    monkeypatch.setattr(pipeline, "_lean_scores", scores)
    outputs = {}
    for workers in (1, n):
        monkeypatch.setattr(pipeline, "lean_workers", lambda lengths, w=workers: w)
        events.clear()
        out = tmp_path / f"w{workers}.gff3"
        invoke("annotate", mini["fa"], "-o", out, "--bed", tmp_path / f"w{workers}.bed", "-q")
        outputs[workers] = (out.read_text(), (tmp_path / f"w{workers}.bed").read_text())
        decodes = [(seqid, on_main) for kind, seqid, on_main in events if kind == "decode"]
        assert sorted(s for s, _ in decodes) == sorted(fasta_lengths(mini["fa"]))
        last = [e[1] for e in events if e[0] == "scores"][-1]
        assert [s for s, on_main in decodes if on_main] == [last]
    check_gff3(tmp_path / "w1.gff3", fasta_lengths(mini["fa"]))
    assert outputs[1] == outputs[n] and "\tgene\t" in outputs[1][0]


def test_lean_workers_fit_memory_and_cores(monkeypatch):
    from genoseg.annotate import pipeline
    from genoseg.crf import threads

    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    per_contig = pipeline.LEAN_BYTES_PER_BASE * 25_000_000
    monkeypatch.setattr(threads, "available_memory", lambda: 3 * per_contig + 1)
    assert pipeline.lean_workers([25_000_000] * 6) == 3  # memory
    assert pipeline.lean_workers([25_000_000, 1_000_000]) == 2  # contigs
    monkeypatch.setattr(threads, "available_memory", lambda: per_contig // 2)
    assert pipeline.lean_workers([25_000_000] * 6) == 1  # never fewer than one
    monkeypatch.setattr(threads, "available_memory", lambda: None)
    assert pipeline.lean_workers([25_000_000] * 40) == 16  # cores
    assert pipeline.lean_workers([]) == 1


def test_viterbi_on_the_host_alongside_device_posteriors_gives_the_same_outputs(
        mini, tmp_path, monkeypatch):
    """On a GPU, a phase-grammar batch takes its Viterbi from the lean host Viterbi while the
    card computes the posteriors (``pipeline.viterbi_on_host_alongside``). Forced here on the
    CPU (the posteriors then come from the CPU backend's own gradient): the same gene models,
    scores, BED and posterior tracks as the usual path."""
    from genoseg.annotate import pipeline

    invoke("annotate", mini["fa"], "-o", tmp_path / "a.gff3", "--bed", tmp_path / "a.bed",
           "--posteriors", tmp_path / "a", "-q")
    monkeypatch.setattr(pipeline, "viterbi_on_host_alongside", lambda device, lengths: True)
    invoke("annotate", mini["fa"], "-o", tmp_path / "b.gff3", "--bed", tmp_path / "b.bed",
           "--posteriors", tmp_path / "b", "-q")
    assert "\tgene\t" in (tmp_path / "a.gff3").read_text()
    for name in ("gff3", "bed"):
        assert (tmp_path / f"b.{name}").read_text() == (tmp_path / f"a.{name}").read_text()
    assert_same_datasets(tmp_path / "a.h5", tmp_path / "b.h5", atol=1e-6)


def test_constraint_columns_built_beside_the_encoder_give_the_same_outputs(
        mini, tmp_path, monkeypatch):
    """Off the compiled CPU twin (a GPU, here the reference backend on the CPU), a phase-grammar
    batch's constraint columns are built once, on a thread beside the encoder, and handed to
    the decoder; the outputs equal those of columns built inside the decoder."""
    from genoseg.crf.phase_head import PhaseGeneHead

    args = ("--backend", "torch", "--posteriors")
    calls = []

    def counted(self, *a, _f=PhaseGeneHead.sequence_columns_of):
        calls.append(len(a[0]))
        return _f(self, *a)

    monkeypatch.setattr(PhaseGeneHead, "sequence_columns_of", counted)
    monkeypatch.setattr(PhaseGeneHead, "sequence_columns", lambda *a: pytest.fail("padded"))
    invoke("annotate", mini["fa"], "-o", tmp_path / "a.gff3", *args, tmp_path / "a", "-q")
    assert sum(calls) == len(fasta_lengths(mini["fa"]))  # every contig once
    monkeypatch.undo()
    from genoseg.annotate import pipeline

    # Without the thread: columns built by the head itself from the padded codes.
    real = pipeline.decode_batch
    monkeypatch.setattr(pipeline, "decode_batch",
                        lambda model, ems, device, codes=None, columns=None:
                        real(model, ems, device, codes))
    invoke("annotate", mini["fa"], "-o", tmp_path / "b.gff3", *args, tmp_path / "b", "-q")
    assert "\tgene\t" in (tmp_path / "a.gff3").read_text()
    assert (tmp_path / "b.gff3").read_text() == (tmp_path / "a.gff3").read_text()
    assert_same_datasets(tmp_path / "a.h5", tmp_path / "b.h5")


def test_host_viterbi_takes_over_only_where_the_host_keeps_up(monkeypatch):
    """The host Viterbi replaces the card's only on a GPU, with numba, for a batch whose longest
    contig repays the numba start-up (HOST_VITERBI_MIN_LONGEST), and while the batch's bases per
    core stay within HOST_VITERBI_KEEPS_UP times that contig: a few long contigs yes, the fly
    test set's records (longest 118 kb) no, many contigs of similar length on few cores no."""
    from genoseg.annotate import pipeline
    from genoseg.crf import threads

    assert not pipeline.viterbi_on_host_alongside("cpu", [100])
    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    assert not pipeline.viterbi_on_host_alongside("cuda", [118_000, 48_000] + [5_000] * 24)
    assert pipeline.viterbi_on_host_alongside("cuda", [400_000, 48_000] + [5_000] * 24)
    assert not pipeline.viterbi_on_host_alongside("cuda", [399_999, 48_000])
    assert not pipeline.viterbi_on_host_alongside("cuda", [500_000] * 60)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    assert not pipeline.viterbi_on_host_alongside("cuda", [500_000, 500_000, 500_000, 500_000,
                                                           500_000])
    assert pipeline.viterbi_on_host_alongside("cuda", [500_000, 500_000, 500_000, 500_000])


def test_gpu_out_of_memory_is_a_one_line_error(mini, tmp_path, monkeypatch):
    """A CUDA out-of-memory error is the input's size, not a bug: one line, exit status 1."""
    import torch

    from genoseg.annotate import pipeline

    def too_big(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(pipeline, "annotate", too_big)
    code, stdout, stderr = run_main("annotate", mini["fa"], "-o", tmp_path / "x.gff3")
    line = assert_one_line_error(code, stdout, stderr)
    assert code == 1 and "out of GPU memory" in line and "80.00 GiB" in line
    assert not (tmp_path / "x.gff3").exists()


def test_lean_viterbi_choice():
    """Long phase contigs: lean on a CPU (posteriors there an error) and on a GPU unless
    posteriors are asked for; short contigs and other grammars never."""
    from genoseg.annotate.pipeline import LEAN_MIN_LENGTH, takes_lean_viterbi
    from genoseg.errors import InputError

    long_, short = LEAN_MIN_LENGTH + 1, LEAN_MIN_LENGTH
    assert takes_lean_viterbi(True, True, long_, False, "c")
    assert takes_lean_viterbi(True, False, long_, False, "c")
    assert not takes_lean_viterbi(True, False, long_, True, "c")
    assert not takes_lean_viterbi(True, True, short, False, "c")
    assert not takes_lean_viterbi(False, True, long_, False, "c")
    with pytest.raises(InputError, match="need a GPU"):
        takes_lean_viterbi(True, True, long_, True, "c")


def test_train_init_from_starts_from_a_models_weights(mini, tiny_model, tmp_path):
    """--init-from: zero further steps give back the source model's weights; the card and
    model.json name the source; another architecture is a one-line error."""
    import torch

    out = tmp_path / "tuned"
    invoke("train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG, "-o", out, "-q",
           "--steps", "0", "--init-from", tiny_model)
    source = torch.load(tiny_model / "weights.pt", weights_only=True)
    tuned = torch.load(out / "weights.pt", weights_only=True)
    assert source.keys() == tuned.keys()
    assert all(torch.equal(source[k], tuned[k]) for k in source)
    meta = json.loads((out / "model.json").read_text())
    assert meta["initialized_from"]["weights_sha256"] == sha256(tiny_model / "weights.pt")
    assert "Fine-tuned from" in (out / "MODEL_CARD.md").read_text()
    # A few steps on from there move the weights.
    invoke("train", "-g", mini["fa"], "-a", mini["gff3"], "-c", TINY_CONFIG, "-o",
           tmp_path / "tuned2", "-q", "--steps", "2", "--init-from", tiny_model)
    moved = torch.load(tmp_path / "tuned2" / "weights.pt", weights_only=True)
    assert any(not torch.equal(source[k], moved[k]) for k in source)
    phase = tmp_path / "phase.toml"
    phase.write_text((REPO / "configs/models/tiny_phase_test.toml").read_text().replace(
        'file = "../schemes/', f'file = "{REPO}/configs/schemes/'))
    code, stdout, stderr = run_main("train", "-g", mini["fa"], "-a", mini["gff3"], "-c", phase,
                                    "-o", tmp_path / "bad", "--init-from", tiny_model)
    assert "architecture differs" in assert_one_line_error(code, stdout, stderr)
    assert not (tmp_path / "bad").exists()


def test_coding_content_is_fitted_onto_a_model_without_it(mini, tmp_path):
    """--init-from a phase model without a content model, [crf] content_order set, --steps 0:
    the table is counted on the training records, every other weight is kept, the written model
    is judged on the validation records, and it annotates."""
    import torch

    text = (REPO / "configs/models/tiny_phase_test.toml").read_text().replace(
        'file = "../schemes/', f'file = "{REPO}/configs/schemes/')
    plain, content = tmp_path / "plain.toml", tmp_path / "content.toml"
    plain.write_text(text)
    content.write_text(text.replace("[crf]\n", "[crf]\ncontent_order = 2\ncontent_weight = 0.5\n"))
    invoke("train", "-g", mini["fa"], "-a", mini["gff3"], "-c", plain, "-o", tmp_path / "p",
           "-q", "--steps", "2")
    code, stdout, stderr = run_main("train", "-g", mini["fa"], "-a", mini["gff3"], "-c", content,
                                    "-o", tmp_path / "c", "-q", "--steps", "0",
                                    "--init-from", tmp_path / "p")
    assert code == 0, stderr
    assert re.search(r"0 steps; validation nll/base \d", stderr), stderr
    before = torch.load(tmp_path / "p" / "weights.pt", weights_only=True)
    after = torch.load(tmp_path / "c" / "weights.pt", weights_only=True)
    assert set(after) - set(before) == {"head.content.llr", "head.content.weight"}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert float(after["head.content.weight"]) == 0.5
    llr = after["head.content.llr"]
    assert llr.shape == (3, 4 ** 3) and torch.isfinite(llr).all() and llr.abs().max() > 0.1
    out = tmp_path / "pred.gff3"
    invoke("annotate", mini["fa"], "-m", tmp_path / "c", "-o", out, "-q")
    check_gff3(out, fasta_lengths(mini["fa"]))


@pytest.mark.parametrize("line", ["flat_long_runs = true", "content_order = 4"])
def test_phase_grammar_options_need_the_phase_grammar(tmp_path, line):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY_CONFIG.read_text().replace('file = "../schemes/',
                                                   f'file = "{REPO}/configs/schemes/')
                   .replace("[crf]\n", f"[crf]\n{line}\n"))
    code, stdout, stderr = run_main("train", "-g", "x.fa", "-a", "x.gff3", "-c", bad,
                                    "-o", tmp_path / "m")
    assert line.split()[0] in assert_one_line_error(code, stdout, stderr)
