"""IACT DL2 -> GADF DL3: event lists and offset-dependent IRFs that gammapy and ctools read.

``appliance dl3 generate`` writes a synthetic Crab-like data set with a known (analytic) response,
``appliance dl3 convert`` turns reconstructed events plus reconstructed Monte Carlo into one GADF
file per observation (EVENTS, GTI, POINTING, AEFF_2D, EDISP_2D, PSF_TABLE, BKG_2D / RAD_MAX_2D) and
the obs-index / hdu-index tables, and ``appliance dl3 check`` proves the output conforms.

Modules: ``model`` (the analytic instrument and source), ``generate``, ``io`` (FITS and HDF5 DL2
readers with the column schema), ``irf`` (pyirf), ``events`` (EVENTS/GTI/POINTING HDUs),
``gadf`` (writing and the conformance check), ``fit`` (gammapy's 1-D spectral fit of a
point-like product), ``cli``. See docs/DL3.md.
"""
