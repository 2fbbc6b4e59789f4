"""Pinned images: specs under ``images/``, built locally (no registry), identified by image ID.

``spec`` reads the specs; ``aptsources`` finds this host's Debian mirror at build time;
``dockerarchive`` turns a rootfs tar into a loadable image with a deterministic ID; ``build``
drives mmdebstrap and docker build; ``lock`` reads and writes ``images/images.lock``;
``verify`` rebuilds and says whether the identity held and, if not, why.
"""
