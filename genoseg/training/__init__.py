"""Training: data windows from FASTA + annotation, the loop, checkpoints."""
