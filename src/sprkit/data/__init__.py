"""Data sets shipped with dependencies (no download)."""
