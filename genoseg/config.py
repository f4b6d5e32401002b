"""Model and run configuration: frozen dataclasses loaded from TOML.

A config file has the sections ``[scheme]``, ``[encoder]``, ``[crf]``, ``[train]`` and
``[annotate]``; every section but ``[scheme]`` may be left out and takes the defaults below, which
suit training a small model on a CPU. ``[scheme]`` is either ``file = "path"`` (relative to the
config file's directory) or the scheme's tables inline (see ``genoseg.labels.scheme``). Loading
resolves it into the full scheme, so ``dump_config`` writes a self-contained file that is saved
beside every checkpoint.

Unknown keys, wrong types and impossible values raise ConfigError with one line naming the file
and the key, e.g. ``cfg.toml: [train] lr: expected a number, got str``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from genoseg.errors import ConfigError
from genoseg.labels.scheme import LabelScheme, load_scheme, scheme_from_dict

log = logging.getLogger(__name__)

DURATION_PRIORS = ("loglinear", "free", "flat")
ENCODER_KINDS = ("cnn",)


@dataclass(frozen=True)
class EncoderConfig:
    """The neural encoder: one-hot sequence (+ tracks) -> per-position label scores.

    Dilations are either listed (``dilations``, one per block) or follow the rule
    ``dilation_base ** (i % dilation_cycle)`` for block i, capped at ``max_dilation``
    (``dilation_cycle = 0``: no cycling).
    """

    kind: str = "cnn"
    width: int = 64
    depth: int = 8
    kernel_size: int = 9
    dilations: tuple[int, ...] = ()
    dilation_base: int = 2
    dilation_cycle: int = 0
    max_dilation: int = 1024
    dropout: float = 0.1
    n_tracks: int = 0

    def resolved_dilations(self) -> tuple[int, ...]:
        """One dilation per residual block."""
        if self.dilations:
            return tuple(self.dilations)
        out = []
        for i in range(self.depth):
            exponent = i % self.dilation_cycle if self.dilation_cycle > 0 else i
            out.append(min(self.dilation_base ** exponent, self.max_dilation))
        return tuple(out)

    @property
    def receptive_field(self) -> int:
        """Input positions (bp) that influence one output position: stem conv, then one dilated
        conv per block, all with ``kernel_size`` taps."""
        return 1 + (self.kernel_size - 1) * (1 + sum(self.resolved_dilations()))


@dataclass(frozen=True)
class CRFConfig:
    """The semi-CRF head.

    ``max_duration`` (K) 0 takes the scheme's; loading resolves it. ``duration_prior``: "loglinear"
    (per label ``a_c log d + b_c d / K`` plus a small learnable residual table), "free" (a learnable
    (K, C) table) or "flat" (no learnable duration scores; only the hard length limits).
    """

    max_duration: int = 0
    duration_prior: str = "loglinear"
    # "tiled": the scheme's labels as CRF labels, long runs tiled (genoseg.crf.head). "phase":
    # the codon-phase gene grammar (genoseg.crf.phase_head; gene schemes only) with start/stop
    # codons, splice sites and in-frame stops as exact constraints from the sequence.
    grammar: str = "tiled"
    min_intron: int = 40  # phase grammar: shortest intron (bp)
    # phase grammar: intergenic and intron full pieces get no learned per-piece prior score
    # (genoseg.crf.phase_head.PhaseGeneHead's flat_long_runs).
    flat_long_runs: bool = False
    # phase grammar: order of the codon-periodic coding content model (a 3-periodic Markov chain
    # against a noncoding one, counted on the training genes when a run starts and saved with
    # the weights; genoseg.crf.coding_content); 0: none. content_weight: its starting weight
    # (learnable; a run of 0 steps keeps it).
    content_order: int = 0
    content_weight: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    window: int = 4096
    batch_size: int = 8
    steps: int = 2000
    lr: float = 2e-3
    # The CRF head's few scores (transitions, durations) must move by several nats from their
    # flat start; at the encoder's rate they would take tens of thousands of steps to get there.
    head_lr: float = 3e-2
    weight_decay: float = 1e-2
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    seed: int = 0
    val_fraction: float = 0.1
    checkpoint_every: int = 200
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    # Reverse-complement each training window with probability 1/2 (strand labels swapped), so
    # both strands see every training gene.
    rc_augment: bool = False
    # Exponential moving average of the weights (decay per step; 0 = off): validation, the
    # best-checkpoint choice and the written model use the averaged weights, a cheap ensemble of
    # the checkpoints along the run that is steadier than any one of them on small training sets.
    ema_decay: float = 0.0


@dataclass(frozen=True)
class AnnotateConfig:
    """Streaming annotation: the encoder runs on ``window``-bp windows that overlap by exactly
    its receptive field - 1; each window's central part is kept and stitched into one score
    track per contig, identical to running the encoder over the whole contig at once
    (genoseg.annotate.pipeline.group_emissions). ``window`` must exceed that overlap."""

    window: int = 65536
    batch_size: int = 4
    # Gene schemes: nats per base added to the intergenic emission when decoding. A prior on how
    # much of a genome lies between genes, which training genes with short flanks cannot teach
    # (see configs/recipes/fly.md for how the default model's value was chosen).
    intergenic_bias: float = 0.0
    # Gene schemes: nats per base subtracted from the intron emission (both strands) when
    # decoding. Like intergenic_bias it keeps a whole chromosome from becoming a few giant genes
    # joined through long "introns", but it leaves exons alone: a gene's exons cost nothing
    # extra, only its intron bases do (configs/recipes/fly.md).
    intron_penalty: float = 0.0
    # Gene grammars: "complete" decodes every contig as starting and ending between genes (gene
    # models lie whole inside it); "partial" lets a run be cut by a contig end, as in a draft
    # assembly whose contigs end inside genes (such cut genes are partial gene models in the
    # GFF3, genoseg.labels.phase_crf.gene_transcripts).
    gene_model: str = "complete"
    # Average the encoder's scores with its scores on the reverse-complemented contig, mapped
    # back to this strand (genoseg.annotate.rc): test-time augmentation for models trained with
    # [train] rc_augment; twice the encoder's time.
    rc_average: bool = False
    # Gene schemes: leave out of the GFF3 (and the BED) every gene model whose score, the mean
    # posterior of its exons' labels, is below this (0: keep every decoded gene). The Viterbi
    # path is the single most probable segmentation; a gene on it can still be improbable, and
    # such genes are mostly wrong (configs/recipes/yeast.md). Needs posteriors: a contig
    # decoded without them (the memory-lean Viterbi on a CPU) keeps its genes unscored.
    min_gene_score: float = 0.0
    # Gene grammars: nats added to the start-codon score of every ATG that opens the longest
    # open reading frame it lies in (no in-frame ATG upstream before an in-frame stop;
    # genoseg.labels.codons.first_orf_starts). A prior for genomes annotated that way: 97 % of
    # the single-exon S288C genes start there (configs/recipes/yeast.md). 0: off.
    orf_start_bonus: float = 0.0


GENE_MODELS = ("complete", "partial")


@dataclass(frozen=True)
class GenosegConfig:
    scheme: LabelScheme
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    crf: CRFConfig = field(default_factory=CRFConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    source: str | None = field(default=None, compare=False)  # file it came from, for messages

    @property
    def K(self) -> int:
        """The resolved maximum segment duration."""
        return self.crf.max_duration or self.scheme.max_duration

    def to_dict(self) -> dict[str, Any]:
        """Plain, TOML-ready form with the scheme inline (self-contained)."""
        out: dict[str, Any] = {"scheme": self.scheme.to_dict()}
        for name in _SECTIONS:
            out[name] = {k: list(v) if isinstance(v, tuple) else v
                         for k, v in dataclasses.asdict(getattr(self, name)).items()}
        return out


_SECTIONS: dict[str, type] = {
    "encoder": EncoderConfig,
    "crf": CRFConfig,
    "train": TrainConfig,
    "annotate": AnnotateConfig,
}


def load_config(path: str | os.PathLike) -> GenosegConfig:
    """Read, type-check, resolve and validate a config file."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_dict(table, source=str(path), base_dir=path.parent)


def config_from_dict(table: Mapping[str, Any], *, source: str = "<config>",
                     base_dir: str | os.PathLike | None = None) -> GenosegConfig:
    """Build a config from a parsed TOML table. ``base_dir`` resolves ``[scheme] file``."""
    unknown = [k for k in table if k != "scheme" and k not in _SECTIONS]
    if unknown:
        raise ConfigError(f"{source}: [{unknown[0]}]: unknown section "
                          f"(allowed: scheme, {', '.join(_SECTIONS)})")
    if "scheme" not in table:
        raise ConfigError(f"{source}: [scheme]: missing (give file = \"...\" or the scheme inline)")
    scheme = _load_scheme_section(table["scheme"], source, base_dir)
    sections = {}
    for name, cls in _SECTIONS.items():
        raw = table.get(name, {})
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: [{name}]: expected a table")
        if name == "annotate" and "overlap" in raw:
            # Configs and models written before session 10 name it; it no longer does anything.
            log.warning("%s: [annotate] overlap is ignored: annotation windows overlap by "
                        "exactly the encoder's receptive field - 1; remove the key", source)
            raw = {k: v for k, v in raw.items() if k != "overlap"}
        sections[name] = _build_section(cls, raw, source, name)
    cfg = GenosegConfig(scheme=scheme, source=source, **sections)
    # Resolve the "0 = automatic" values, so the saved config is explicit.
    if cfg.crf.max_duration == 0:
        cfg = dataclasses.replace(cfg, crf=dataclasses.replace(cfg.crf,
                                                               max_duration=scheme.max_duration))
    _validate(cfg, source)
    return cfg


def dump_config(cfg: GenosegConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as TOML, atomically."""
    import tomli_w

    from genoseg.io.atomic import atomic_open

    text = ("# Resolved genoseg config: every value explicit, the label scheme inline.\n"
            + tomli_w.dumps(cfg.to_dict()))
    with atomic_open(path, "w") as handle:
        handle.write(text)


def override(cfg: GenosegConfig, changes: Mapping[str, Any], *, label: str | None = None
             ) -> GenosegConfig:
    """A copy with dotted-key changes, e.g. ``{"train.steps": 100}``, type-checked like a file.
    ``label`` names the changes' origin in error messages (e.g. a command-line option) instead
    of the config's file; the copy keeps the file as its source."""
    table = cfg.to_dict()
    for dotted, value in changes.items():
        section, _, key = dotted.partition(".")
        if section not in _SECTIONS or not key:
            raise ConfigError(f"override {dotted!r}: expected <section>.<key> with section one of "
                              f"{', '.join(_SECTIONS)}")
        table[section][key] = list(value) if isinstance(value, tuple) else value
    changed = config_from_dict(table, source=label or cfg.source or "<override>")
    return dataclasses.replace(changed, source=cfg.source) if label else changed


def _load_scheme_section(raw: Any, source: str, base_dir: str | os.PathLike | None
                         ) -> LabelScheme:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: [scheme]: expected a table")
    if "file" in raw:
        extra = [k for k in raw if k != "file"]
        if extra:
            raise ConfigError(f"{source}: [scheme] {extra[0]}: not allowed beside 'file' (give "
                              "the scheme either as a file or inline)")
        if not isinstance(raw["file"], str):
            raise ConfigError(f"{source}: [scheme] file: expected a string")
        scheme_path = Path(raw["file"])
        if not scheme_path.is_absolute() and base_dir is not None:
            scheme_path = Path(base_dir) / scheme_path
        return load_scheme(scheme_path)
    return scheme_from_dict(raw, source=f"{source}: [scheme]")


def _build_section(cls: type, raw: Mapping[str, Any], source: str, section: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in hints:
            raise ConfigError(f"{source}: [{section}] {key}: unknown key "
                              f"(allowed: {', '.join(names)})")
        values[key] = _coerce(value, hints[key], f"{source}: [{section}] {key}")
    return cls(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a field type (int, float, str, bool, tuple[int, ...])."""
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: expected {expected}, got {type(value).__name__} {value!r}")

    if hint is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if typing.get_origin(hint) is tuple:
        (item, _ellipsis) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise bad("a list")
        return tuple(_coerce(v, item, where) for v in value)
    raise TypeError(f"unsupported config field type {hint!r}")  # programming error


def _validate(cfg: GenosegConfig, source: str) -> None:
    e, c, t, a = cfg.encoder, cfg.crf, cfg.train, cfg.annotate
    checks: list[tuple[bool, str, str]] = [
        (e.kind in ENCODER_KINDS, "encoder.kind", f"must be one of {', '.join(ENCODER_KINDS)}"),
        (e.width >= 1, "encoder.width", "must be >= 1"),
        (e.depth >= 0, "encoder.depth", "must be >= 0"),
        (e.kernel_size >= 1 and e.kernel_size % 2 == 1, "encoder.kernel_size",
         "must be odd and >= 1 (for 'same' padding)"),
        (not e.dilations or len(e.dilations) == e.depth, "encoder.dilations",
         f"needs one entry per block (depth = {e.depth})"),
        (all(d >= 1 for d in e.dilations), "encoder.dilations", "entries must be >= 1"),
        (e.dilation_base >= 1, "encoder.dilation_base", "must be >= 1"),
        (e.dilation_cycle >= 0, "encoder.dilation_cycle", "must be >= 0"),
        (e.max_dilation >= 1, "encoder.max_dilation", "must be >= 1"),
        (0.0 <= e.dropout < 1.0, "encoder.dropout", "must be in [0, 1)"),
        (e.n_tracks >= 0, "encoder.n_tracks", "must be >= 0"),
        (c.max_duration >= 1, "crf.max_duration", "must be >= 1 (0 = the scheme's)"),
        (c.duration_prior in DURATION_PRIORS, "crf.duration_prior",
         f"must be one of {', '.join(DURATION_PRIORS)}"),
        (c.grammar in ("tiled", "phase"), "crf.grammar", "must be 'tiled' or 'phase'"),
        (c.grammar != "phase" or cfg.scheme.kind == "gene", "crf.grammar",
         "'phase' needs a gene scheme (kind = \"gene\")"),
        (c.grammar != "phase" or c.max_duration >= 5, "crf.max_duration",
         "the phase grammar needs >= 5"),
        (c.grammar != "phase" or 3 <= c.min_intron <= c.max_duration + 2, "crf.min_intron",
         "must lie in [3, max_duration + 2]"),
        (c.grammar == "phase" or not c.flat_long_runs, "crf.flat_long_runs",
         "applies to the phase grammar only (grammar = \"phase\")"),
        (c.content_order == 0 or c.grammar == "phase", "crf.content_order",
         "applies to the phase grammar only (grammar = \"phase\")"),
        (0 <= c.content_order <= 8, "crf.content_order", "must lie in [0, 8]"),
        (abs(c.content_weight) <= 10.0, "crf.content_weight", "must lie in [-10, 10]"),
        (max(cfg.scheme.min_length) <= c.max_duration, "crf.max_duration",
         f"{c.max_duration} is below a label's min_length ({max(cfg.scheme.min_length)})"),
        (t.window >= 1, "train.window", "must be >= 1"),
        (t.batch_size >= 1, "train.batch_size", "must be >= 1"),
        (t.steps >= 0, "train.steps", "must be >= 0"),
        (t.lr > 0, "train.lr", "must be > 0"),
        (t.head_lr > 0, "train.head_lr", "must be > 0"),
        (t.weight_decay >= 0, "train.weight_decay", "must be >= 0"),
        (t.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 = no clipping)"),
        (0.0 <= t.val_fraction < 1.0, "train.val_fraction", "must be in [0, 1)"),
        (t.checkpoint_every >= 1, "train.checkpoint_every", "must be >= 1"),
        (0.0 <= t.ema_decay < 1.0, "train.ema_decay", "must be in [0, 1) (0 = no averaging)"),
        (t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"), "train.device",
         "must be 'auto', 'cpu' or 'cuda[:N]'"),
        (a.window >= 1, "annotate.window", "must be >= 1"),
        (a.batch_size >= 1, "annotate.batch_size", "must be >= 1"),
        (a.intergenic_bias == 0.0 or cfg.scheme.kind == "gene", "annotate.intergenic_bias",
         "applies to gene schemes only"),
        (abs(a.intergenic_bias) <= 1.0, "annotate.intergenic_bias",
         "must lie in [-1, 1] nats per base"),
        (a.intron_penalty == 0.0 or cfg.scheme.kind == "gene", "annotate.intron_penalty",
         "applies to gene schemes only"),
        (abs(a.intron_penalty) <= 1.0, "annotate.intron_penalty",
         "must lie in [-1, 1] nats per base"),
        (a.min_gene_score == 0.0 or cfg.scheme.kind == "gene", "annotate.min_gene_score",
         "applies to gene schemes only"),
        (0.0 <= a.min_gene_score <= 1.0, "annotate.min_gene_score", "must lie in [0, 1]"),
        (a.orf_start_bonus == 0.0 or c.grammar == "phase", "annotate.orf_start_bonus",
         "applies to the phase grammar only (crf grammar = \"phase\")"),
        (abs(a.orf_start_bonus) <= 20.0, "annotate.orf_start_bonus",
         "must lie in [-20, 20] nats"),
        (a.gene_model in GENE_MODELS, "annotate.gene_model",
         f"must be one of {', '.join(GENE_MODELS)}"),
    ]
    for ok, dotted, message in checks:
        if not ok:
            section, key = dotted.split(".")
            value = getattr(getattr(cfg, section), key)
            raise ConfigError(f"{source}: [{section}] {key}: {message}, got {value!r}")
    rf = e.receptive_field
    if a.window < rf:
        raise ConfigError(f"{source}: [annotate] window: must be >= the encoder's receptive "
                          f"field ({rf} bp; windows overlap by {rf - 1} bp), got {a.window}")
