from tests.appliance.staging.archive_server import archive  # noqa: F401
from tests.appliance.transfer.fixtures import gridftp, nginx, pki, proxy  # noqa: F401
