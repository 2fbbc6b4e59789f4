"""Radio image pipeline over the archive (issue #16): ALMA-like observations in, catalogs out.

Stages, each a plain function the CLI (``appliance pipeline ...``) calls:

* ``synth``    - a synthetic ALMA-like archive with a truth file (ALMA is not reachable here);
* ``products`` - group files into observations and product types (FFT primary-beam test), XML+XSD;
* ``image``    - source detection (SExtractor, Aegean, emcee) and cross-match with the truth;
* ``match``    - select and fetch products from our archive (or ALMA through astroquery);
* ``runner``   - the same stage over many items: parallel, resumable, with flags that persist.
"""
