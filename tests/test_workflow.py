"""The Snakemake workflow (Snakefile + workflows/): dry runs, and one real run of train -> annotate
with configs/models/tiny_test.toml on tests/data/cli/mini.{fa,gff3} (~25 s on a CPU)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "cli"
TINY_CONFIG = REPO / "configs" / "models" / "tiny_test.toml"


def snakemake_command() -> list[str]:
    exe = shutil.which("snakemake")
    if exe is not None:
        return [exe]
    if importlib.util.find_spec("snakemake") is not None:
        return [sys.executable, "-m", "snakemake"]
    pytest.skip("snakemake is not installed (pip install 'genoseg[workflow]')")


def run_snakemake(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SNAKEMAKE_PROFILE", None)  # a user's global profile must not leak into the test
    proc = subprocess.run([*snakemake_command(), "--snakefile", str(REPO / "Snakefile"), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc


def explain(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"


def job_counts(text: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: {rule: count}."""
    counts, inside = {}, False
    for line in text.splitlines():
        if line.startswith("job ") and "count" in line:
            inside = True
            continue
        if inside:
            words = line.split()
            if not words or words[0] == "total":
                break
            if len(words) == 2 and words[1].isdigit():
                counts[words[0]] = int(words[1])
    return counts


@pytest.fixture
def mini(tmp_path) -> Path:
    for name in ("mini.fa", "mini.gff3"):
        shutil.copy(DATA / name, tmp_path / name)
    return tmp_path


def tiny_config(**extra: str) -> list[str]:
    """--config for the tiny model on the mini genome, paths relative to the run folder."""
    values = {
        "genoseg_cmd": f"{sys.executable} -m genoseg",
        "genome": "mini.fa",
        "annotation": "mini.gff3",
        "train_config": str(TINY_CONFIG),
        "model_dir": "model",
        "genomes_to_annotate": "{mini: mini.fa}",
        "outdir": "out",
        "threads": "1",
        "device": "cpu",
        **extra,
    }
    return ["--config", *(f"{k}={v}" for k, v in values.items())]


def test_dry_run_default_config():
    # From the repository root, where the defaults' relative paths (examples/, configs/) point.
    proc = run_snakemake("-n", "--nolock", cwd=REPO, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, explain(proc)
    counts = job_counts(text)
    assert counts.get("train") == 1 and counts.get("annotate") == 1, text[-2000:]


def test_dry_run_scatters_by_genome(mini):
    shutil.copy(mini / "mini.fa", mini / "other.fa")
    proc = run_snakemake("-n", *tiny_config(genomes_to_annotate="{mini: mini.fa, other: other.fa}"),
                         cwd=mini, timeout=120)
    assert proc.returncode == 0, explain(proc)
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts.get("annotate") == 2 and counts.get("train") == 1


def test_dry_run_with_given_model(mini):
    """train=false: annotate with an existing model directory, no training job."""
    model = mini / "given_model"
    model.mkdir()
    proc = run_snakemake("-n", *tiny_config(train="false", model_dir=str(model),
                                            outputs="[bed]"), cwd=mini, timeout=120)
    assert proc.returncode == 0, explain(proc)
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts.get("annotate") == 1 and "train" not in counts


def test_bad_config_is_reported(mini):
    proc = run_snakemake("-n", *tiny_config(outputs="[gff3, pdf]"), cwd=mini, timeout=120)
    assert proc.returncode != 0
    assert "unknown ['pdf']" in proc.stdout + proc.stderr


def test_slurm_profile_is_valid_yaml():
    import yaml

    profile = yaml.safe_load((REPO / "workflows" / "profiles" / "slurm" / "config.yaml")
                             .read_text())
    assert profile["executor"] == "slurm"
    assert set(profile["set-resources"]) <= {"train", "annotate"}
    assert {"slurm_account", "slurm_partition", "mem_mb", "runtime"} <= set(
        profile["default-resources"])


def test_real_run_train_then_annotate(mini):
    proc = run_snakemake("--cores", "1", *tiny_config(), cwd=mini, timeout=400)
    assert proc.returncode == 0, explain(proc)

    for name in ("config.toml", "weights.pt", "model.json", "MODEL_CARD.md"):
        assert (mini / "model" / name).is_file(), name
    gff3 = mini / "out" / "mini" / "mini.gff3"
    bed = mini / "out" / "mini" / "mini.bed"
    assert gff3.read_text().startswith("##gff-version 3\n")
    assert "\tgene\t" in gff3.read_text()
    rows = [line.split("\t") for line in bed.read_text().splitlines() if line]
    assert rows and all(len(row) == 9 for row in rows)
    posteriors = mini / "out" / "mini" / "posteriors"
    assert (posteriors / "mini.h5").is_file()
    assert (posteriors / "mini.intergenic.bw").is_file()
    assert "wrote model to model" in (mini / "out" / "logs" / "train.log").read_text()

    # Everything is up to date now: a dry run has nothing to do.
    again = run_snakemake("-n", *tiny_config(), cwd=mini, timeout=120)
    assert again.returncode == 0, explain(again)
    assert "Nothing to be done" in again.stdout + again.stderr, explain(again)
