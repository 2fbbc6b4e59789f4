"""Opening the configured catalog store.

``archive.catalog`` holds the store's interface and records; ``catalog_sql`` the shared SQL
implementation with its versioned schema; ``catalog_sqlite`` and ``catalog_postgres`` the two
backends. This module is the only one that knows all of them, so the interface never imports
its implementations (that was an import circle).
"""

from __future__ import annotations

from typing import Any

from archive.catalog import CatalogStore


def open_catalog(cfg: Any) -> CatalogStore:
    """Open the backend named in ``cfg.catalog`` (an :class:`~archive.config.ArchiveConfig`),
    upgrading its schema to this release's version."""
    if cfg.catalog.backend == "postgresql":
        from archive.catalog_postgres import PostgresCatalog  # psycopg only when configured

        return PostgresCatalog(cfg.catalog.dsn)
    from archive.catalog_sqlite import SqliteCatalog

    cfg.catalog_path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteCatalog(str(cfg.catalog_path))
