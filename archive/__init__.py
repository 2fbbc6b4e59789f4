"""The Long Term Archive (LTA) server: tape as the primary store, a searchable catalog, staging.

One job per module. Pure core: ``scheduler`` (recall planning), ``cache`` (pins, eviction,
ISO 8601 durations), ``paths`` (normal form, traversal refused), ``webdav`` (XML, digests,
ranges). Seams: ``catalog`` (the store protocol; ``catalog_sql`` shared SQL with
``catalog_sqlite`` and ``catalog_postgres`` backends) and ``clock`` (real, sped-up, simulated).
Shell: ``tape`` (the tape library simulator), ``sink`` (checksummed upload writes), ``engine``
(the archive service: ingest, migration, recalls, eviction), ``rebuild`` (catalog from tapes),
``fitsmeta`` (FITS header metadata), ``auth`` (tokens, X.509, grid-mapfile), ``taperest``
(WLCG Tape REST API v1), ``server`` (HTTP/WebDAV + APIs), ``metrics``, ``openapi``, ``config``
(one typed object from YAML + env) and ``cli``. See docs/ARCHIVE.md.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
