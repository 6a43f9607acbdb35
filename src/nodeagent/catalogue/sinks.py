"""Catalogue: sinks metrics."""
