"""Partitioning defaults (as for the LSST data previews), importable without numpy so that the
CLI can build its parsers on nodes that only run other commands."""

DEFAULT_NUM_STRIPES = 340
DEFAULT_NUM_SUB_STRIPES = 3
DEFAULT_OVERLAP = 0.01667  # degrees (1 arcmin)
