"""Catalogue: gpu metrics."""
