"""``dataclient``: the user's command line to the archive and grid storage, credentials hidden.

Like INFN's dataclient it wraps the transfer clients (here ``appliance.transfer`` and
``appliance.staging``) so that a user types ``dataclient get lta:/obs/x.fits .`` and never handles
proxies: a bearer token is used when one is found, otherwise an RFC 3820 proxy, created from
``~/.globus/usercert.pem``/``userkey.pem`` (``proxy.py``) and renewed before it runs out
(``credentials.py``). Site aliases come from ``~/.config/dataclient/config.yaml`` (``config.py``).
"""
