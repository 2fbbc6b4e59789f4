"""One recipe over many inputs (``appliance batch``), each item its own run, on Dask distributed.

``items`` expands the inputs (a list, a glob, an archive collection) and writes one derived
recipe per item; ``stage`` brings archive inputs online in one bulk request first; ``worker``
is what a Dask worker runs for one item; ``engine`` drives the cluster (embedded LocalCluster,
an existing scheduler, or Slurm through dask-jobqueue) and journals each result as it lands;
``summary`` is the verdict (done / failed with the error / flagged).
"""
