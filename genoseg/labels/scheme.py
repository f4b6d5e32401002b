"""Label schemes: which labels exist and which segmentations the CRF may produce.

A scheme is data, not code paths: the grammar (allowed transitions, allowed first and last
labels) and the hard length limits are tables that turn into ``-inf`` masks for the semi-CRF.

TOML layout (``configs/schemes/*.toml``, or inline under ``[scheme]`` in a model config)::

    name = "gene_basic"
    kind = "gene"                   # "gene" or "generic"
    background = "intergenic"       # label of positions no feature covers
    max_duration = 512              # K: the longest single segment (CRF piece)
    init = "all"                    # labels a sequence may start with ("all" or a list)
    final = "all"                   # labels a sequence may end with
    transitions = [["intergenic", "exon+"], ...]   # allowed (from, to) between *runs*
                                    # ("all": every pair, except self edges of tiled labels)

    [[labels]]
    name = "intergenic"
    color = [160, 160, 160]         # BED9 itemRgb
    min_length = 1                  # shortest allowed segment / run (hard)
    max_length = 0                  # longest allowed single segment (hard), 0 = up to K
    tile = true                     # runs of any length >= min_length (see below)

Tiling (``tile = true``). A run is a maximal stretch of one label. A tiled label forms runs of
*any* length ``n >= min_length``, longer than ``max_length`` and longer than K included, and each
such run has exactly ONE segmentation inside the CRF (the model head builds it: with
``m = min_length``, ``M = max_length`` or K, a run of length ``n <= M`` is one piece, a longer
one is ``q`` full pieces of length ``M - m + 1`` followed by one last piece of length in
``[m, M]``). Because the segmentation is canonical, the probability the CRF gives a labelling is
the probability of that one path, so training (which sums over the segmentations of the gold
labelling) and Viterbi decoding (which picks the best path) agree on what they optimise. A tiled
label must not list its own self transition: tiling replaces it (two runs of one label cannot
abut; they are one run).

Untiled labels (the default) keep per-segment semantics: every segment is a whole run within
``[min_length, max_length]``, unless the scheme lists the label's self transition, in which case
segments chain into longer runs by self transitions -- which makes a run of length n
representable by many segmentations (spurious ambiguity: the decoded best *segmentation* need not
be the most probable *labelling*). Prefer ``tile = true`` for labels whose runs may be long.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from genoseg.errors import ConfigError

if TYPE_CHECKING:  # torch is imported lazily so that loading a config stays fast
    import torch

KINDS = ("gene", "generic")
GENE_LABELS = ("intergenic", "exon+", "intron+", "exon-", "intron-")

# Distinct, print-friendly colours for BED9 itemRgb; the background label is grey.
_PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (57, 59, 121),
)
_GREY = (160, 160, 160)
_SCHEME_KEYS = ("name", "kind", "background", "max_duration", "init", "final", "transitions",
                "labels")
_LABEL_KEYS = ("name", "color", "min_length", "max_length", "tile")


@dataclass(frozen=True)
class LabelScheme:
    """A label set with its grammar and hard length limits.

    Per-label tuples (``colors``, ``min_length``, ``max_length``, ``tile``) follow ``labels``
    order; label index ``c`` is the column ``c`` of every (…, C) tensor. ``max_length`` 0 means
    "up to K". ``tile`` (default all False) marks labels whose runs tile canonically (module
    docstring).
    """

    name: str
    kind: str
    labels: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    transitions: tuple[tuple[str, str], ...]
    init: tuple[str, ...]
    final: tuple[str, ...]
    min_length: tuple[int, ...]
    max_length: tuple[int, ...]
    background: str
    max_duration: int
    tile: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        if not self.tile:  # default: nothing tiles
            object.__setattr__(self, "tile", (False,) * len(self.labels))
        problem = _check_scheme(self)
        if problem is not None:
            key, message = problem
            raise ConfigError(f"label scheme {self.name!r}: {key}: {message}")

    @property
    def C(self) -> int:
        """Number of labels."""
        return len(self.labels)

    @property
    def K(self) -> int:
        """Maximum segment duration."""
        return self.max_duration

    def index(self, label: str) -> int:
        """Column of ``label``; ConfigError for an unknown name."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise ConfigError(
                f"label scheme {self.name!r}: unknown label {label!r} "
                f"(known: {', '.join(self.labels)})"
            ) from None

    @property
    def background_index(self) -> int:
        return self.index(self.background)

    def transition_allowed(self) -> "torch.Tensor":
        """(C, C) bool: ``[i, j]`` is True when label j may follow label i."""
        import torch

        allowed = torch.zeros(self.C, self.C, dtype=torch.bool)
        for a, b in self.transitions:
            allowed[self.index(a), self.index(b)] = True
        return allowed

    def init_allowed(self) -> "torch.Tensor":
        """(C,) bool: labels a sequence may start with."""
        return self._label_set(self.init)

    def final_allowed(self) -> "torch.Tensor":
        """(C,) bool: labels a sequence may end with."""
        return self._label_set(self.final)

    def duration_allowed(self, K: int | None = None) -> "torch.Tensor":
        """(K, C) bool: row ``d - 1`` is True where a segment of length d is allowed."""
        import torch

        K = self.max_duration if K is None else int(K)
        d = torch.arange(1, K + 1).unsqueeze(1)  # (K, 1)
        lo = torch.tensor(self.min_length).unsqueeze(0)  # (1, C)
        hi = torch.tensor([m if m > 0 else K for m in self.max_length]).unsqueeze(0)
        return (d >= lo) & (d <= hi)

    def transition_mask(self, dtype: "torch.dtype | None" = None) -> "torch.Tensor":
        """(C, C) float: 0 where the transition is allowed, -inf where it is forbidden."""
        return _to_mask(self.transition_allowed(), dtype)

    def init_mask(self, dtype: "torch.dtype | None" = None) -> "torch.Tensor":
        """(C,) float: 0 for allowed first labels, -inf otherwise."""
        return _to_mask(self.init_allowed(), dtype)

    def final_mask(self, dtype: "torch.dtype | None" = None) -> "torch.Tensor":
        """(C,) float: 0 for allowed last labels, -inf otherwise."""
        return _to_mask(self.final_allowed(), dtype)

    def duration_mask(self, K: int | None = None, dtype: "torch.dtype | None" = None) -> "torch.Tensor":
        """(K, C) float: 0 where segment length ``d = row + 1`` is allowed, -inf otherwise."""
        return _to_mask(self.duration_allowed(K), dtype)

    def to_dict(self) -> dict[str, Any]:
        """Plain, explicit TOML-ready form (``load_scheme(s.to_dict()) == s``)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "background": self.background,
            "max_duration": self.max_duration,
            "init": list(self.init),
            "final": list(self.final),
            "transitions": [[a, b] for a, b in self.transitions],
            "labels": [
                {"name": n, "color": list(col), "min_length": lo, "max_length": hi, "tile": t}
                for n, col, lo, hi, t in zip(self.labels, self.colors, self.min_length,
                                             self.max_length, self.tile)
            ],
        }

    def _label_set(self, names: Sequence[str]) -> "torch.Tensor":
        import torch

        allowed = torch.zeros(self.C, dtype=torch.bool)
        for n in names:
            allowed[self.index(n)] = True
        return allowed


def _to_mask(allowed: "torch.Tensor", dtype: "torch.dtype | None") -> "torch.Tensor":
    import torch

    dtype = torch.get_default_dtype() if dtype is None else dtype
    zero = torch.zeros((), dtype=dtype)
    return torch.where(allowed, zero, torch.tensor(float("-inf"), dtype=dtype))


def _check_scheme(s: Any) -> tuple[str, str] | None:
    """First problem found as (key, message), or None."""
    if not s.name:
        return "name", "must not be empty"
    if s.kind not in KINDS:
        return "kind", f"must be one of {', '.join(KINDS)}, got {s.kind!r}"
    if not s.labels:
        return "labels", "at least one label is required"
    for n in s.labels:
        if not n or any(ch.isspace() for ch in n) or "/" in n or "," in n:
            return "labels", f"label name {n!r} must be non-empty without spaces, '/' or ','"
    if len(set(s.labels)) != len(s.labels):
        dup = sorted({n for n in s.labels if s.labels.count(n) > 1})
        return "labels", f"duplicate label(s) {', '.join(dup)}"
    C = len(s.labels)
    for key in ("colors", "min_length", "max_length", "tile"):
        if len(getattr(s, key)) != C:
            return key, f"needs one entry per label ({C})"
    for n, col in zip(s.labels, s.colors):
        if len(col) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in col):
            return f"labels.{n}.color", f"must be three integers 0..255, got {list(col)}"
    if s.max_duration < 1:
        return "max_duration", f"must be >= 1, got {s.max_duration}"
    for n, lo, hi in zip(s.labels, s.min_length, s.max_length):
        if lo < 1:
            return f"labels.{n}.min_length", f"must be >= 1, got {lo}"
        if lo > s.max_duration:
            return f"labels.{n}.min_length", (
                f"{lo} exceeds max_duration {s.max_duration}: no segment could carry the label")
        if hi != 0 and hi < lo:
            return f"labels.{n}.max_length", f"must be 0 (= K) or >= min_length {lo}, got {hi}"
    known = set(s.labels)
    if s.background not in known:
        return "background", f"{s.background!r} is not a label"
    for key in ("init", "final"):
        names = getattr(s, key)
        if not names:
            return key, "at least one label is required"
        bad = [n for n in names if n not in known]
        if bad:
            return key, f"unknown label(s) {', '.join(map(repr, bad))}"
    if not s.transitions:
        return "transitions", "at least one transition is required"
    seen = set()
    for pair in s.transitions:
        if len(pair) != 2:
            return "transitions", f"each entry must be [from, to], got {list(pair)}"
        bad = [n for n in pair if n not in known]
        if bad:
            return "transitions", f"unknown label(s) {', '.join(map(repr, bad))} in {list(pair)}"
        if tuple(pair) in seen:
            return "transitions", f"duplicate transition {list(pair)}"
        seen.add(tuple(pair))
    for n, t in zip(s.labels, s.tile):
        if t and (n, n) in seen:
            return "transitions", (f"tiled label {n!r} must not list its self transition "
                                   f"[{n!r}, {n!r}]: tiling replaces it")
    if s.kind == "gene":
        missing = [n for n in GENE_LABELS if n not in known]
        if missing:
            return "labels", f"a gene scheme needs the labels {', '.join(GENE_LABELS)}; " \
                             f"missing {', '.join(missing)}"
        if s.background != "intergenic":
            return "background", "a gene scheme's background must be 'intergenic'"
    return None


def load_scheme(source: str | os.PathLike | Mapping[str, Any], *, name: str | None = None
                ) -> LabelScheme:
    """Load a scheme from a TOML file or from an already parsed table.

    ``name`` labels the source in error messages when ``source`` is a mapping. Errors are
    ConfigError with one line naming the file and the key.
    """
    if isinstance(source, Mapping):
        return scheme_from_dict(source, source=name or "<scheme>")
    path = Path(source)
    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: label scheme file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return scheme_from_dict(table, source=str(path))


def scheme_from_dict(table: Mapping[str, Any], *, source: str = "<scheme>") -> LabelScheme:
    """Build a LabelScheme from its TOML table; ConfigError naming ``source`` and the key."""

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {message}")

    if not isinstance(table, Mapping):
        raise fail("scheme", "must be a table")
    unknown = [k for k in table if k not in _SCHEME_KEYS]
    if unknown:
        raise fail(unknown[0], f"unknown key (allowed: {', '.join(_SCHEME_KEYS)})")
    for key in ("name", "kind", "labels", "transitions", "max_duration"):
        if key not in table:
            raise fail(key, "missing")

    def get_str(key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise fail(key, f"expected a string, got {type(value).__name__}")
        return value

    def get_int(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(key, f"expected an integer, got {type(value).__name__}")
        return value

    def get_names(key: str, value: Any, labels: tuple[str, ...]) -> tuple[str, ...]:
        if value == "all":
            return labels
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(key, "expected \"all\" or a list of label names")
        return tuple(value)

    name = get_str("name", table["name"])
    kind = get_str("kind", table["kind"])
    max_duration = get_int("max_duration", table["max_duration"])

    raw_labels = table["labels"]
    if not isinstance(raw_labels, list) or not raw_labels:
        raise fail("labels", "expected a non-empty array of [[labels]] tables")
    entries = []
    for i, entry in enumerate(raw_labels):
        where = f"labels[{i}]"
        if isinstance(entry, str):  # shorthand: a bare name takes every default
            entry = {"name": entry}
        if not isinstance(entry, Mapping):
            raise fail(where, "expected a table with at least 'name'")
        bad = [k for k in entry if k not in _LABEL_KEYS]
        if bad:
            raise fail(f"{where}.{bad[0]}", f"unknown key (allowed: {', '.join(_LABEL_KEYS)})")
        if "name" not in entry:
            raise fail(f"{where}.name", "missing")
        get_str(f"{where}.name", entry["name"])
        entries.append(entry)
    labels = tuple(e["name"] for e in entries)
    background = get_str("background", table.get("background", labels[0]))

    colors, lo, hi, tile = [], [], [], []
    k = 0
    for i, entry in enumerate(entries):
        where = f"labels[{i}]"
        color = entry.get("color")
        if color is None:  # background grey, the others from the palette in order
            if entry["name"] == background:
                color = list(_GREY)
            else:
                color = list(_PALETTE[k % len(_PALETTE)])
                k += 1
        if (not isinstance(color, list) or len(color) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in color)):
            raise fail(f"{where}.color", "expected [r, g, b] integers 0..255")
        colors.append(tuple(color))
        lo.append(get_int(f"{where}.min_length", entry.get("min_length", 1)))
        hi.append(get_int(f"{where}.max_length", entry.get("max_length", 0)))
        t = entry.get("tile", False)
        if not isinstance(t, bool):
            raise fail(f"{where}.tile", f"expected true or false, got {type(t).__name__}")
        tile.append(t)

    raw_trans = table["transitions"]
    if raw_trans == "all":  # every pair, except the self edges that tiling replaces
        tiled = {n for n, t in zip(labels, tile) if t}
        transitions = tuple((a, b) for a in labels for b in labels
                            if not (a == b and a in tiled))
    else:
        if not isinstance(raw_trans, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p)
                for p in raw_trans):
            raise fail("transitions", "expected \"all\" or a list of [from, to] label pairs")
        transitions = tuple((a, b) for a, b in raw_trans)

    fields = dict(
        name=name, kind=kind, labels=labels, colors=tuple(colors), transitions=transitions,
        init=get_names("init", table.get("init", "all"), labels),
        final=get_names("final", table.get("final", "all"), labels),
        min_length=tuple(lo), max_length=tuple(hi), background=background,
        max_duration=max_duration, tile=tuple(tile),
    )
    problem = _check_scheme(SimpleNamespace(**fields))
    if problem is not None:
        raise fail(*problem)
    return LabelScheme(**fields)


def scheme_from_bed_labels(labels: Sequence[str], background: str = "background", K: int = 256,
                           *, name: str = "generic", min_length: int = 1) -> LabelScheme:
    """A generic scheme for BED-labelled intervals.

    ``background`` (prepended if absent) covers every position no interval covers. Every label
    tiles (runs of any length >= ``min_length``, one segmentation each) and may follow any other
    label; adjacent intervals with the same name are one run. Sequences may start and end with
    any label.
    """
    names = [background] + [n for n in dict.fromkeys(labels) if n != background]
    colors = []
    k = 0
    for n in names:
        if n == background:
            colors.append(_GREY)
        else:
            colors.append(_PALETTE[k % len(_PALETTE)])
            k += 1
    labels_t = tuple(names)
    return LabelScheme(
        name=name, kind="generic", labels=labels_t, colors=tuple(colors),
        transitions=tuple((a, b) for a in labels_t for b in labels_t if a != b),
        init=labels_t, final=labels_t, min_length=(min_length,) * len(labels_t),
        max_length=(0,) * len(labels_t), background=background, max_duration=int(K),
        tile=(True,) * len(labels_t),
    )
