"""Catalogue: slurm metrics."""
