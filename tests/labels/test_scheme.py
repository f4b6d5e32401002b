"""Label schemes: shipped files, masks (exactly 0 / -inf), validation, generic schemes."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from genoseg.errors import ConfigError
from genoseg.labels import GENE_LABELS, load_scheme, scheme_from_bed_labels, scheme_from_dict

SCHEMES = Path(__file__).resolve().parents[2] / "configs" / "schemes"
NEG_INF = -math.inf


@pytest.fixture(scope="module")
def gene():
    return load_scheme(SCHEMES / "gene_basic.toml")


def assert_zero_or_neg_inf(mask: torch.Tensor) -> None:
    assert bool(((mask == 0) | (mask == NEG_INF)).all())


def test_gene_scheme_grammar(gene):
    assert gene.kind == "gene" and gene.labels == GENE_LABELS and gene.C == 5
    assert gene.K == 512 and gene.background == "intergenic"
    mask = gene.transition_mask()
    assert mask.shape == (5, 5)
    assert_zero_or_neg_inf(mask)
    allowed = {(gene.labels[i], gene.labels[j]) for i, j in (mask == 0).nonzero().tolist()}
    expected = {
        ("intergenic", "exon+"), ("exon+", "intron+"), ("intron+", "exon+"),
        ("exon+", "intergenic"), ("intergenic", "exon-"), ("exon-", "intron-"),
        ("intron-", "exon-"), ("exon-", "intergenic"),
    }
    assert allowed == expected
    # Every label tiles (canonical runs of any length), which replaces the self transitions.
    assert gene.tile == (True,) * 5
    # Strands never meet without intergenic sequence in between; introns never touch intergenic.
    assert mask[gene.index("exon+"), gene.index("exon-")] == NEG_INF
    assert mask[gene.index("intron+"), gene.index("intergenic")] == NEG_INF


def test_gene_scheme_init_final_and_durations(gene):
    assert bool((gene.init_mask() == 0).all()) and bool((gene.final_mask() == 0).all())
    dur = gene.duration_mask()
    assert dur.shape == (512, 5)
    assert_zero_or_neg_inf(dur)
    for name in ("intron+", "intron-"):
        c = gene.index(name)
        assert bool((dur[:19, c] == NEG_INF).all()) and bool((dur[19:, c] == 0).all())
    for name in ("intergenic", "exon+", "exon-"):
        assert bool((dur[:, gene.index(name)] == 0).all())
    assert gene.duration_mask(K=7).shape == (7, 5)
    assert gene.duration_mask(dtype=torch.float64).dtype == torch.float64


def test_max_length_and_round_trip():
    generic = load_scheme(SCHEMES / "generic_example.toml")
    dur = generic.duration_mask()
    p, e = generic.index("promoter"), generic.index("enhancer")
    assert bool((dur[:200, p] == 0).all()) and bool((dur[200:, p] == NEG_INF).all())
    assert bool((dur[:49, e] == NEG_INF).all()) and bool((dur[49:, e] == 0).all())
    # "all" with every label tiled: every pair except the self edges that tiling replaces.
    assert generic.tile == (True,) * 4
    assert torch.equal(generic.transition_mask() == 0, ~torch.eye(4, dtype=torch.bool))
    for scheme in (generic, load_scheme(SCHEMES / "gene_basic.toml")):
        assert load_scheme(scheme.to_dict()) == scheme


def test_scheme_is_frozen_and_index(gene):
    with pytest.raises(dataclasses.FrozenInstanceError):
        gene.name = "other"  # type: ignore[misc]
    assert gene.index("intron-") == 4
    with pytest.raises(ConfigError, match="unknown label 'utr'"):
        gene.index("utr")


BASE = {"name": "t", "kind": "generic", "max_duration": 8, "transitions": "all",
        "labels": ["background", "a"]}


@pytest.mark.parametrize(
    "change, parts",
    [
        ({"colour": 1}, ["colour", "unknown key"]),
        ({"kind": "protein"}, ["kind", "generic"]),
        ({"labels": ["a", "a"]}, ["labels", "duplicate"]),
        ({"labels": ["a b"]}, ["labels", "spaces"]),
        ({"labels": [{"name": "background", "min_length": 9}]}, ["min_length", "max_duration"]),
        ({"labels": [{"name": "background", "min_length": 4, "max_length": 2}]}, ["max_length"]),
        ({"labels": [{"name": "background", "color": [0, 0, 300]}]}, ["color"]),
        ({"transitions": [["background", "b"]]}, ["transitions", "'b'"]),
        ({"transitions": [["a", "a"], ["a", "a"]]}, ["transitions", "duplicate"]),
        ({"init": ["zzz"]}, ["init", "'zzz'"]),
        ({"final": []}, ["final"]),
        ({"background": "zzz"}, ["background"]),
        ({"max_duration": 0}, ["max_duration"]),
        ({"max_duration": "8"}, ["max_duration", "integer"]),
        ({"labels": [{"name": "background", "tile": "yes"}]}, ["labels[0].tile", "true or false"]),
        ({"labels": [{"name": "background", "tile": True}],
          "transitions": [["background", "background"]]},
         ["transitions", "tiled label 'background'", "self transition", "tiling replaces it"]),
    ],
)
def test_scheme_validation(change, parts):
    with pytest.raises(ConfigError) as info:
        scheme_from_dict({**BASE, **change}, source="here.toml")
    message = str(info.value)
    assert message.startswith("here.toml: ") and "\n" not in message
    for part in parts:
        assert part in message, (part, message)


def test_tile_defaults_and_round_trip():
    untiled = scheme_from_dict(BASE)  # "all" without tiling keeps the self edges
    assert untiled.tile == (False, False) and len(untiled.transitions) == 4
    tiled = scheme_from_dict({**BASE, "labels": ["background", {"name": "a", "tile": True}]})
    assert tiled.tile == (False, True)
    assert ("a", "a") not in tiled.transitions and ("background", "background") in tiled.transitions
    assert load_scheme(tiled.to_dict()) == tiled
    old = {k: v for k, v in untiled.to_dict().items()}
    for entry in old["labels"]:  # a config written before `tile` existed
        del entry["tile"]
    assert load_scheme(old) == untiled
    with pytest.raises(ConfigError, match="tiled label 'a'"):
        dataclasses.replace(tiled, transitions=tiled.transitions + (("a", "a"),))


def test_missing_key_and_file(tmp_path):
    with pytest.raises(ConfigError, match="here.toml: kind: missing"):
        scheme_from_dict({k: v for k, v in BASE.items() if k != "kind"}, source="here.toml")
    with pytest.raises(ConfigError, match="not found"):
        load_scheme(tmp_path / "absent.toml")


def test_scheme_from_bed_labels():
    s = scheme_from_bed_labels(["enhancer", "promoter", "enhancer", "background"], K=32)
    assert s.labels == ("background", "enhancer", "promoter")
    assert s.kind == "generic" and s.K == 32 and s.background_index == 0
    # Every label tiles (long intervals: one canonical segmentation) instead of self transitions.
    assert s.tile == (True,) * 3
    assert torch.equal(s.transition_mask() == 0, ~torch.eye(3, dtype=torch.bool))
    assert bool((s.init_mask() == 0).all()) and bool((s.final_mask() == 0).all())
    assert len(set(s.colors)) == 3
    assert load_scheme(s.to_dict()) == s
