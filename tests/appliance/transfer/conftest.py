from tests.appliance.transfer.fixtures import gridftp, nginx, pki, proxy  # noqa: F401
