"""Config loading: defaults, resolution of the scheme and automatic values, one-line errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from genoseg.config import (
    DURATION_PRIORS,
    EncoderConfig,
    config_from_dict,
    dump_config,
    load_config,
    override,
)
from genoseg.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SCHEMES = REPO / "configs" / "schemes"
MODELS = REPO / "configs" / "models"


def write(tmp_path: Path, text: str, name: str = "cfg.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def scheme_line() -> str:
    return f'[scheme]\nfile = "{SCHEMES / "gene_basic.toml"}"\n'


def assert_one_line(exc: ConfigError, *parts: str) -> None:
    message = str(exc)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)


@pytest.mark.parametrize("name", ["cnn_small.toml", "generic_small.toml"])
def test_shipped_model_configs_load(name):
    cfg = load_config(MODELS / name)
    assert cfg.K >= max(cfg.scheme.min_length)
    assert cfg.annotate.window >= cfg.encoder.receptive_field
    assert cfg.crf.max_duration == cfg.K  # resolved, never 0


def test_defaults_and_resolution(tmp_path):
    cfg = load_config(write(tmp_path, scheme_line()))
    assert cfg.encoder == EncoderConfig()
    assert cfg.encoder.resolved_dilations() == (1, 2, 4, 8, 16, 32, 64, 128)
    assert cfg.encoder.receptive_field == 1 + 8 * (1 + 255)
    assert cfg.crf.max_duration == cfg.scheme.max_duration == 512
    assert cfg.train.window == 4096 and cfg.train.device == "auto"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.steps = 3  # type: ignore[misc]


def test_dilation_rule_cycle_and_cap():
    enc = EncoderConfig(depth=7, dilation_base=3, dilation_cycle=3, max_dilation=5)
    assert enc.resolved_dilations() == (1, 3, 5, 1, 3, 5, 1)


def test_scheme_file_is_relative_to_config(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "s.toml").write_text((SCHEMES / "generic_example.toml").read_text())
    cfg = load_config(write(tmp_path, '[scheme]\nfile = "sub/s.toml"\n'))
    assert cfg.scheme.name == "generic_example"


def test_inline_scheme(tmp_path):
    text = """
[scheme]
name = "two"
kind = "generic"
max_duration = 16
transitions = "all"
[[scheme.labels]]
name = "background"
[[scheme.labels]]
name = "peak"
min_length = 3
"""
    cfg = load_config(write(tmp_path, text))
    assert cfg.scheme.labels == ("background", "peak")
    assert cfg.scheme.min_length == (1, 3)
    assert cfg.K == 16


@pytest.mark.parametrize(
    "body, parts",
    [
        ("[train]\nstepz = 3\n", ["[train] stepz", "unknown key"]),
        ("[trian]\nsteps = 3\n", ["[trian]", "unknown section"]),
        ('[train]\nlr = "fast"\n', ["[train] lr", "expected a number", "str"]),
        ("[train]\nbatch_size = 2.5\n", ["[train] batch_size", "expected an integer"]),
        ("[train]\nsteps = true\n", ["[train] steps", "expected an integer"]),
        ("[encoder]\ndilations = 4\n", ["[encoder] dilations", "expected a list"]),
        ('[encoder]\ndilations = [1, "2"]\n', ["[encoder] dilations", "expected an integer"]),
        ("[encoder]\nkernel_size = 8\n", ["[encoder] kernel_size", "odd"]),
        ("[encoder]\ndepth = 3\ndilations = [1, 2]\n", ["[encoder] dilations", "one entry"]),
        ('[crf]\nduration_prior = "poisson"\n', ["[crf] duration_prior", "loglinear"]),
        ("[crf]\nmax_duration = 10\n", ["[crf] max_duration", "min_length"]),
        ("[train]\nval_fraction = 1.0\n", ["[train] val_fraction"]),
        ('[train]\ndevice = "tpu"\n', ["[train] device"]),
        ("[annotate]\nwindow = 1000\n", ["[annotate] window", "receptive field (2049 bp"]),
        ('[annotate]\ngene_model = "whole"\n', ["[annotate] gene_model", "complete, partial"]),
        ("[train]\nema_decay = 1.0\n", ["[train] ema_decay", "[0, 1)"]),
        ("[annotate]\norf_start_bonus = 2.0\n", ["[annotate] orf_start_bonus", "phase"]),
        ('[crf]\ngrammar = "phase"\n[annotate]\norf_start_bonus = 30.0\n',
         ["[annotate] orf_start_bonus", "[-20, 20]"]),
        ("train = 3\n", ["[train]", "expected a table"]),
    ],
)
def test_errors_name_file_and_key(tmp_path, body, parts):
    # Top-level keys must precede the [scheme] table in TOML.
    text = body + scheme_line() if not body.startswith("[") else scheme_line() + body
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_one_line(info.value, str(path), *parts)


@pytest.mark.parametrize(
    "scheme, parts",
    [
        ('file = "nope.toml"', ["nope.toml", "not found"]),
        (f'file = "{SCHEMES / "gene_basic.toml"}"\nname = "x"', ["[scheme] name", "beside"]),
        ('name = "x"\nkind = "generic"\nmax_duration = 4\ntransitions = "all"\n'
         'labels = [{name = "a"}, {name = "b", colr = [1, 2, 3]}]', ["labels[1].colr", "unknown"]),
        ('name = "x"\nkind = "generic"\nmax_duration = 4\ntransitions = [["a", "z"]]\n'
         'labels = ["a"]', ["transitions", "'z'"]),
        ('name = "x"\nkind = "gene"\nmax_duration = 4\ntransitions = "all"\nlabels = ["a"]',
         ["labels", "intergenic"]),
    ],
)
def test_scheme_errors(tmp_path, scheme, parts):
    path = write(tmp_path, "[scheme]\n" + scheme + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_one_line(info.value, *parts)


def test_missing_scheme_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match=r"\[scheme\]: missing"):
        load_config(write(tmp_path, "[train]\nsteps = 3\n"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[train\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")


def test_int_accepted_where_float_expected(tmp_path):
    cfg = load_config(write(tmp_path, scheme_line() + "[train]\nlr = 1\n"))
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)


def test_dump_is_self_contained_and_round_trips(tmp_path):
    cfg = load_config(MODELS / "cnn_small.toml")
    out = tmp_path / "elsewhere" / "config.toml"
    dump_config(cfg, out)
    assert "file =" not in out.read_text()
    again = load_config(out)
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()
    assert not list(out.parent.glob(".*tmp"))  # the atomic writer cleaned up


def test_override():
    cfg = load_config(MODELS / "cnn_small.toml")
    changed = override(cfg, {"train.steps": 7, "encoder.dilations": (1, 1, 1, 1, 1, 1)})
    assert changed.train.steps == 7 and changed.encoder.dilations == (1,) * 6
    assert cfg.train.steps == 300
    with pytest.raises(ConfigError, match=r"\[train\] steps"):
        override(cfg, {"train.steps": "many"})
    with pytest.raises(ConfigError, match="section"):
        override(cfg, {"steps": 7})


def test_config_from_dict_without_file():
    table = {"scheme": {"name": "g", "kind": "generic", "max_duration": 8,
                        "transitions": "all", "labels": ["background", "x"]}}
    cfg = config_from_dict(table)
    assert cfg.scheme.background == "background"


def test_duration_prior_names_match_head():
    pytest.importorskip("torch")
    from genoseg.crf.head import DURATION_PRIORS as HEAD_PRIORS

    assert HEAD_PRIORS == DURATION_PRIORS


def test_old_overlap_key_is_ignored_with_a_warning(tmp_path, caplog):
    """Configs and models written before the windows' overlap was fixed at the receptive field
    still load; the key changes nothing and the warning says so."""
    with caplog.at_level("WARNING"):
        cfg = load_config(write(tmp_path, scheme_line() + "[annotate]\noverlap = 100\n"))
    assert cfg == load_config(write(tmp_path, scheme_line()))
    assert "[annotate] overlap is ignored" in caplog.text
    assert "overlap" not in cfg.to_dict()["annotate"]
