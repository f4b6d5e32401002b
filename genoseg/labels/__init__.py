"""Label schemes (data: labels, grammar, length limits) and converters between annotations,
per-position labels and decoded segments."""

from genoseg.labels.scheme import (
    GENE_LABELS,
    LabelScheme,
    load_scheme,
    scheme_from_bed_labels,
    scheme_from_dict,
)

__all__ = ["GENE_LABELS", "LabelScheme", "load_scheme", "scheme_from_bed_labels",
           "scheme_from_dict"]
