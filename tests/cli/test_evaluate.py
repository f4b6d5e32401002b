"""`genoseg evaluate`: CDS-level accuracy counted as genometools `gt eval` counts it.

Fixtures (tests/data/eval/, hand-made): ref.gff3 holds three coding genes, gA (+, 3 CDS parts of
100 bp: 101-200, 301-400, 501-600, plus UTRs), gB (-, 1001-1150 and 1251-1400) on s1 and gC
(+, 51-350) on s2, and a non-coding gene; so 3 genes, 3 mRNAs, 6 CDS exons, 900 CDS bases, and
the scored range of s1 is 101..1400 (span of its reference CDS). pred_*.gff3 are AUGUSTUS-style
predictions (`transcript` features, intron and codon lines). quirks_*.gff3 exercise gt eval's
corner cases; their expected numbers were computed by hand and agree with eval_genes.sh
(genometools 1.6.2). Everything runs in-process in well under a second, without torch.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import assert_one_line_error as cli_assert_one_line_error
from test_cli import run_main

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "eval"
REF = DATA / "ref.gff3"


def counts_from_table(stdout: str) -> dict[str, tuple[int, int, int]]:
    """level -> (TP, reference, predicted) from the printed table."""
    lines = stdout.strip().splitlines()
    assert lines[0].split()[:5] == ["basis", "level", "Sn", "Sp", "F1"]
    out = {}
    for line in lines[1:]:
        basis, level, sn, sp, f1, sn_counts, sp_counts = line.split()
        assert basis == "CDS"
        tp, n_ref = map(int, sn_counts.split("/"))
        tp2, n_pred = map(int, sp_counts.split("/"))
        assert tp == tp2
        out[level] = (tp, n_ref, n_pred)
    assert list(out) == ["gene", "mRNA", "exon", "nucleotide"]
    return out


def evaluate_counts(pred: Path, ref: Path = REF) -> dict[str, tuple[int, int, int]]:
    code, out, err = run_main("evaluate", "--reference", ref, pred)
    assert code == 0, err
    return counts_from_table(out)


# ------------------------------------------------------------------------------------------------
# Scores


def test_perfect_prediction(tmp_path):
    # AUGUSTUS-style file: gene = CDS span while the reference gene includes UTRs; the CDS view
    # (mRNA range = CDS span) makes them the same gene
    js, tsv = tmp_path / "out.json", tmp_path / "out.tsv"
    code, out, err = run_main("evaluate", "-r", REF, DATA / "pred_perfect.gff3", "--json", js, "--tsv", tsv)
    assert code == 0, err
    assert counts_from_table(out) == {"gene": (3, 3, 3), "mRNA": (3, 3, 3), "exon": (6, 6, 6),
                                      "nucleotide": (900, 900, 900)}
    report = json.loads(js.read_text())
    assert report["basis"] == "CDS" and report["ignored_seqids"] == []
    for level in ("gene", "mRNA", "exon", "nucleotide"):
        entry = report["levels"][level]
        assert entry["sensitivity"] == entry["specificity"] == entry["f1"] == 1.0
    rows = [line.split("\t") for line in tsv.read_text().splitlines()]
    assert rows[0] == ["basis", "level", "sensitivity", "specificity", "F1", "sn_counts", "sp_counts"]
    assert rows[1] == ["CDS", "gene", "1.0000", "1.0000", "1.0000", "3/3", "3/3"]
    assert rows[4] == ["CDS", "nucleotide", "1.0000", "1.0000", "1.0000", "900/900", "900/900"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "out.tsv"]  # no temp files


def test_shifted_exon_boundary():
    # gA's second CDS ends at 409 instead of 400: that exon is wrong (5 of 6 right, 5 of 6
    # predicted exons right), so gA and its mRNA are wrong (2 of 3); at the nucleotide level
    # all 900 reference bases are found and only the 9 extra bases are false: Sp = 900/909
    counts = evaluate_counts(DATA / "pred_shifted.gff3")
    assert counts == {"gene": (2, 3, 3), "mRNA": (2, 3, 3), "exon": (5, 6, 6),
                      "nucleotide": (900, 900, 909)}
    code, out, _ = run_main("evaluate", "-r", REF, DATA / "pred_shifted.gff3")
    nucleotide = out.strip().splitlines()[-1].split()
    assert nucleotide[2:5] == ["1.0000", "0.9901", "0.9950"]  # 900/909; F1 = 2*0.9901/1.9901


def test_wrong_strand():
    # gB predicted with the right coordinates on '+': strand is part of every match, so gB's 2
    # exons and 300 bases are missed and its 300 predicted bases on '+' are false
    counts = evaluate_counts(DATA / "pred_strand.gff3")
    assert counts == {"gene": (2, 3, 3), "mRNA": (2, 3, 3), "exon": (4, 6, 6),
                      "nucleotide": (600, 900, 900)}


def test_extra_false_positive_gene(caplog):
    # g4 (s1 701-790, 90 bp, inside the scored range) is a false gene, exon and 90 false bases;
    # g5 lies on s3, which has no reference gene: ignored, as gt eval does, with a warning
    code, out, err = run_main("evaluate", "-r", REF, DATA / "pred_extra.gff3")
    assert code == 0
    assert counts_from_table(out) == {"gene": (3, 3, 4), "mRNA": (3, 3, 4), "exon": (6, 6, 7),
                                      "nucleotide": (900, 900, 990)}
    assert "ignored 1 predicted gene(s) on 1 sequence(s) without any reference gene" in caplog.text


def test_missing_gene():
    # gC (s2, 1 exon, 300 bp) not predicted: sensitivity drops, specificity stays 1
    counts = evaluate_counts(DATA / "pred_missing.gff3")
    assert counts == {"gene": (2, 3, 2), "mRNA": (2, 3, 2), "exon": (5, 6, 5),
                      "nucleotide": (600, 900, 600)}


QUIRKS = {
    # genes: P1 has R1's range but 1 mRNA against 2, which gt eval counts as equal; P2b repeats
    # P2 and finds R2 used; P6 (no strand) and P4, P5 are false; R4 (q2) is missed; P7 (q3) ignored
    "gene": (3, 4, 7),
    # mRNAs: P2 = R2.t1, P3 = R3.t1; P1.t1 has R1.t1's range but other CDS
    "mRNA": (2, 5, 7),
    # exons, counted per transcript: 101-200 occurs twice in R1 and once in P1 -> 1 true; R2's
    # exon once, predicted twice -> 1 true; R3's 2 exons; 8 reference, 9 predicted (P6's counts)
    "exon": (4, 8, 9),
    # bases: + strand of q1 (range 101..1300): reference 400, predicted union 101-200 + 251-400 +
    # R3 = 450, 400 shared; - strand 300 shared; R4's 100 missed; P4 (1501-1600) and P5
    # (1551-1650) lie beyond the range and count per CDS line: 200 more false bases
    "nucleotide": (700, 800, 950),
}


def test_gt_eval_corner_cases():
    assert evaluate_counts(DATA / "quirks_pred.gff3", DATA / "quirks_ref.gff3") == QUIRKS


def test_gzip_input(tmp_path):
    ref_gz, pred_gz = tmp_path / "ref.gff3.gz", tmp_path / "pred.gff3.gz"
    ref_gz.write_bytes(gzip.compress(REF.read_bytes()))
    pred_gz.write_bytes(gzip.compress((DATA / "pred_shifted.gff3").read_bytes()))
    assert evaluate_counts(pred_gz, ref_gz) == evaluate_counts(DATA / "pred_shifted.gff3")
    # gzip is recognised by its magic bytes, not the name
    plain_name = tmp_path / "pred.gff3"
    shutil.copy(pred_gz, plain_name)
    assert evaluate_counts(plain_name, ref_gz) == evaluate_counts(DATA / "pred_shifted.gff3")


def test_empty_prediction(tmp_path, caplog):
    empty = tmp_path / "empty.gff3"
    empty.write_text("##gff-version 3\n")
    code, out, err = run_main("evaluate", "-r", REF, empty)
    assert code == 0
    assert counts_from_table(out) == {"gene": (0, 3, 0), "mRNA": (0, 3, 0), "exon": (0, 6, 0),
                                      "nucleotide": (0, 900, 0)}
    assert "no CDS under an mRNA/transcript feature; every level scores 0" in caplog.text


def test_evaluate_imports_no_torch(tmp_path):
    code = ("import sys\n"
            "from genoseg.cli import main\n"
            f"sys.argv = ['genoseg', 'evaluate', '-r', {str(REF)!r}, {str(DATA / 'pred_perfect.gff3')!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit status 1, no traceback, no output files


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("GENOSEG_DEBUG", None)
    return env


def assert_one_line_error(code: int, out: str, err: str) -> str:
    """test_cli's one-line-error check, and the exit status is exactly 1."""
    line = cli_assert_one_line_error(code, out, err)
    assert code == 1, (code, err)
    return line


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("which", ["reference", "prediction"])
@pytest.mark.parametrize("content,message", [
    (None, "annotation file not found"),
    ("##gff-version 3\ns1\tx\tgene\t1\t100\t.\t+\t.\n", ":2: expected 9 tab-separated columns, found 8"),
    ("s1\tx\tCDS\t1\tten\t.\t+\t0\tParent=t1\n", ":1: non-integer coordinates"),
    ("s1\tx\tCDS\t50\t10\t.\t+\t0\tParent=t1\n", ":1: invalid range 50..10"),
    ("s1\tx\tCDS\t1\t10\t.\tx\t0\tParent=t1\n", ":1: invalid strand 'x'"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "not a GFF3 text file"),
    ("s1\tx\tmRNA\t1\t10\t.\t+\t.\tID=t1\ns1\tx\tmRNA\t1\t10\t.\t+\t.\tID=t1\n",
     ":2: mRNA ID 't1' already used on line 1"),
])
def test_bad_input(tmp_path, which, content, message):
    bad = tmp_path / "bad.gff3"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    elif content is not None:
        bad.write_text(content)
    js = tmp_path / "out.json"
    ref, pred = (bad, DATA / "pred_perfect.gff3") if which == "reference" else (REF, bad)
    line = assert_one_line_error(*run_main("evaluate", "-r", ref, pred, "--json", js))
    assert message in line and str(bad) in line
    assert not js.exists()


def test_reference_without_cds(tmp_path):
    ref = _write(tmp_path / "ref.gff3", "##gff-version 3\n"
                 "s1\tx\tgene\t1\t100\t.\t+\t.\tID=g1\n"
                 "s1\tx\tmRNA\t1\t100\t.\t+\t.\tID=t1;Parent=g1\n"
                 "s1\tx\texon\t1\t100\t.\t+\t.\tParent=t1\n")
    line = assert_one_line_error(*run_main("evaluate", "-r", ref, DATA / "pred_perfect.gff3"))
    assert "no CDS under an mRNA/transcript feature" in line


def test_subprocess_missing_file():
    proc = subprocess.run([sys.executable, "-m", "genoseg", "evaluate", "-r", "no/such.gff3",
                           str(DATA / "pred_perfect.gff3")], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr)
    assert "no/such.gff3: annotation file not found" in proc.stderr


def test_usage_errors(tmp_path):
    a_file = _write(tmp_path / "a_file", "")
    for args in (["evaluate", DATA / "pred_perfect.gff3"],  # --reference missing
                 ["evaluate", "-r", REF, DATA / "pred_perfect.gff3", "--tsv", a_file / "x.tsv"]):
        code, out, err = run_main(*args)
        assert code == 2 and out == "" and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("Error:"), err


# ------------------------------------------------------------------------------------------------
# Against genometools itself


@pytest.mark.skipif(shutil.which("gt") is None, reason="genometools (gt) not installed")
def test_matches_gt_eval(tmp_path):
    """quirks_*.gff3 are already in eval_genes.sh's CDS view, so eval_genes.sh reduces to
    `gt gff3 -sort -tidy -retainids` on each file and `gt eval`; its CDS-level counts must equal ours."""
    import re

    sorted_files = []
    for name in ("quirks_ref.gff3", "quirks_pred.gff3"):
        out = tmp_path / name
        subprocess.run(["gt", "gff3", "-sort", "-tidy", "-retainids", "-o", str(out), "-force",
                        str(DATA / name)], check=True, capture_output=True, timeout=60)
        sorted_files.append(str(out))
    proc = subprocess.run(["gt", "eval", *sorted_files], check=True, capture_output=True,
                          text=True, timeout=60)
    gt = {}
    for level in ("gene", "mRNA"):
        sn = re.search(rf"^{level} sensitivity \(CDS level\):\s+\S+ \((\d+)/(\d+)\)", proc.stdout, re.M)
        sp = re.search(rf"^{level} specificity \(CDS level\):\s+\S+ \((\d+)/(\d+)\)", proc.stdout, re.M)
        gt[level] = (int(sn[1]), int(sn[2]), int(sp[2]))
    sn = re.search(r"^exon sensitivity \(CDS level, all\):\s+\S+ \((\d+)/(\d+)\)", proc.stdout, re.M)
    sp = re.search(r"^exon specificity \(CDS level, all\):\s+\S+ \((\d+)/(\d+)\)", proc.stdout, re.M)
    gt["exon"] = (int(sn[1]), int(sn[2]), int(sp[2]))
    sn = re.search(r"^nucleotide sensitivity \(CDS level\):.*TP=(\d+) \+ FN=(\d+)", proc.stdout, re.M)
    sp = re.search(r"^nucleotide specificity \(CDS level\):.*TP=(\d+) \+ FP=(\d+)", proc.stdout, re.M)
    tp = int(sn[1])
    gt["nucleotide"] = (tp, tp + int(sn[2]), tp + int(sp[2]))
    assert gt == QUIRKS
    assert evaluate_counts(DATA / "quirks_pred.gff3", DATA / "quirks_ref.gff3") == gt
