"""Annotation: windows -> encoder -> contig scores -> semi-CRF decode -> GFF3/BED/tracks."""
