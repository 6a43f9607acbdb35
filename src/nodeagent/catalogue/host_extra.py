"""Catalogue: host_extra metrics."""
