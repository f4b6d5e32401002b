"""Genome I/O: readers (FASTA, GFF3/GTF, BED, BAM, HDF5 tracks) and writers (GFF3, BED, tracks)."""
