"""Input resolvers: turn a recipe input URI into a verified file in the content-addressed store.

The seam is ``InputResolver`` (``base.py``); one module per family of URI schemes. The registry
(``registry.py``) picks the resolver by scheme, so the recipe runner never knows where data came
from. Local files (``file://`` and plain paths) live in ``local.py``; archive and network
resolvers (``lta://``, ``davs://``, ``https://``, ``gsiftp://``) plug in the same way.
"""
