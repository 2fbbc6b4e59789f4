"""Qserv integration: from LSST stack catalogs to a partitioned, loaded and verified Qserv dataset.

The chain, one module per step:

* ``generate``  - a synthetic galaxy-cluster field written in the afw FITS layout (test data);
* ``afw``       - reading and writing afw.table FITS catalogs (``flags`` bit column + ``TFLAGn``);
* ``convert``   - afw/Parquet/FITS tables to Qserv input rows (degrees, named booleans, NULLs)
  plus a Felis schema (``felis_schema``);
* ``chunker``   - Qserv's spherical partitioning (pure, numpy-vectorised), identical chunk and
  sub-chunk ids to Qserv's ``sph-partition``;
* ``partition`` - streaming bucket sort of rows into ``chunk_<id>.txt`` / ``chunk_<id>_overlap.txt``;
* ``load``      - MariaDB loaders: the plain reference tables and the per-chunk worker layout;
* ``verify``    - the query suite run on both, results merged chunk by chunk and compared;
* ``export``    - a query result written as a FITS table (input of the ``cluster-catalog`` recipe);
* ``ingest``    - a client for Qserv's ingest REST API (not runnable here: no Qserv cluster).
"""
