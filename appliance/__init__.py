"""The appliance: client and orchestration side of the reproducibility and archive appliance.

Sub-packages, one concern each: ``images`` (pinned base and derived images), ``recipes``
(recipe format, schema, lock, cache key), ``inputs`` (input resolvers: where recipe inputs come
from), ``runtimes`` (container engines behind one seam), ``runs`` (run, record, replay),
``compare`` (output comparison policies and verdicts), ``export`` (RO-Crate and bundles).
"""

__version__ = "0.1.0"
