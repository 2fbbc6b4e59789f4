"""BeeGFS 7 configuration files rendered from the roles, checked against upstream's keys.

The service refuses to start on an unknown key ("The config argument '...' is invalid", from the
Config.cpp of each service), so every key we write must be one BeeGFS 7.4 documents in the
default beegfs-<service>.conf it ships. The sets below are those files' keys (7.4 series).
"""

from __future__ import annotations

import pytest

from tests.playbooks.render import ROLES, render_file

COMMON = {
    "sysMgmtdHost", "connAuthFile", "connDisableAuthentication", "connMgmtdPortTCP",
    "connMgmtdPortUDP", "connPortShift", "connUseRDMA", "connInterfacesFile", "connNetFilterFile",
    "connTcpOnlyFilterFile", "connFallbackExpirationSecs", "connMaxInternodeNum",
    "logLevel", "logType", "logNoDate", "logNumLines", "logNumRotatedFiles", "logStdFile",
}
DOCUMENTED = {
    "mgmtd": COMMON | {
        "storeMgmtdDirectory", "storeAllowFirstRunInit", "storeFsUUID", "sysAllowNewServers",
        "sysAllowNewTargets", "sysTargetOfflineTimeoutSecs", "sysOverrideStoredRoot",
        "tuneNumWorkers", "tuneClientAutoRemoveMins", "tuneMetaSpaceLowLimit",
        "tuneMetaSpaceEmergencyLimit", "tuneMetaInodesLowLimit", "tuneMetaInodesEmergencyLimit",
        "tuneStorageSpaceLowLimit", "tuneStorageSpaceEmergencyLimit", "tuneStorageInodesLowLimit",
        "tuneStorageInodesEmergencyLimit", "tuneMetaDynamicPools", "tuneStorageDynamicPools",
        "quotaEnableEnforcement", "quotaQueryType", "quotaUpdateIntervalMin",
    },
    "meta": COMMON | {
        "storeMetaDirectory", "storeAllowFirstRunInit", "storeFsUUID", "storeUseExtendedAttribs",
        "storeClientXAttrs", "storeClientACLs", "connMetaPortTCP", "connMetaPortUDP",
        "sysTargetAttachmentFile", "tuneNumWorkers", "tuneTargetChooser", "tuneBindToNumaZone",
        "runDaemonized",
    },
    "storage": COMMON | {
        "storeStorageDirectory", "storeAllowFirstRunInit", "storeFsUUID", "connStoragePortTCP",
        "connStoragePortUDP", "tuneNumWorkers", "tuneBindToNumaZone", "tuneFileReadSize",
        "tuneFileWriteSize", "runDaemonized",
    },
    "client": {
        "sysMgmtdHost", "connAuthFile", "connDisableAuthentication", "connClientPortUDP",
        "connHelperdPortTCP", "connMgmtdPortTCP", "connMgmtdPortUDP", "connPortShift",
        "connUseRDMA", "connInterfacesFile", "connNetFilterFile", "connMaxInternodeNum",
        "logLevel", "logType", "logClientID", "logHelperdIP", "quotaEnabled",
        "sysMountSanityCheckMS", "tuneFileCacheType", "tuneRemoteFSync",
    },
    "helperd": {
        "connAuthFile", "connDisableAuthentication", "connHelperdPortTCP", "connPortShift",
        "logLevel", "logType", "logNoDate", "logNumLines", "logNumRotatedFiles", "logStdFile",
        "tuneNumWorkers", "runDaemonized",
    },
}

VARS = {
    "beegfs_mgmtd_host": "mgmt.test",
    "beegfs_conn_auth_secret": "x" * 48,
    "beegfs_storage_node_numid": 2,
    "beegfs_storage_targets": [
        {"path": "/data/t201", "target_id": 201},
        {"path": "/data/t202", "target_id": 202},
    ],
    "beegfs_mgmtd_storage_space_low_limit": "2G",
    "beegfs_mgmtd_storage_space_emergency_limit": "500M",
}

CASES = [
    ("mgmtd", ["beegfs", "beegfs_mgmtd"], "beegfs_mgmtd/templates/7/beegfs-mgmtd.conf.j2"),
    ("meta", ["beegfs", "beegfs_meta"], "beegfs_meta/templates/7/beegfs-meta.conf.j2"),
    ("storage", ["beegfs", "beegfs_storage"], "beegfs_storage/templates/7/beegfs-storage.conf.j2"),
    ("client", ["beegfs", "beegfs_client"], "beegfs_client/templates/7/beegfs-client.conf.j2"),
    ("helperd", ["beegfs", "beegfs_client"], "beegfs_client/templates/7/beegfs-helperd.conf.j2"),
]


def parse_conf(text: str) -> dict[str, str]:
    """BeeGFS's format: `key = value`, `#` comments; a repeated key is an error here."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key = value line: {line!r}"
        key = key.strip()
        assert key not in out, f"key {key} written twice"
        out[key] = value.strip()
    return out


@pytest.mark.parametrize("service,roles,template", CASES, ids=[c[0] for c in CASES])
def test_keys_are_documented_and_auth_is_on(service, roles, template):
    conf = parse_conf(render_file(roles, VARS, ROLES / template))
    unknown = set(conf) - DOCUMENTED[service]
    assert not unknown, f"{template}: keys BeeGFS {service} does not know: {sorted(unknown)}"
    assert conf["connAuthFile"] == "/etc/beegfs/connauthfile"
    assert conf["connDisableAuthentication"] == "false"
    if service != "helperd":
        assert conf.get("sysMgmtdHost", "mgmt.test") == "mgmt.test"


def test_storage_targets_and_ports():
    roles = ["beegfs", "beegfs_storage"]
    conf = parse_conf(render_file(roles, VARS, ROLES / CASES[2][2]))
    assert conf["storeStorageDirectory"] == "/data/t201,/data/t202"
    assert conf["connStoragePortTCP"] == conf["connStoragePortUDP"] == "8003"
    assert conf["connMgmtdPortTCP"] == "8008"
    assert conf["storeAllowFirstRunInit"] == "false"  # never format an unmounted target


def test_mgmtd_test_limits_and_extra_keys():
    extra = {**VARS, "beegfs_mgmtd_conf_extra": {"tuneNumWorkers": 8, "sysTargetOfflineTimeoutSecs": 60}}
    conf = parse_conf(render_file(["beegfs", "beegfs_mgmtd"], extra, ROLES / CASES[0][2]))
    assert conf["tuneStorageSpaceLowLimit"] == "2G"
    assert conf["tuneStorageSpaceEmergencyLimit"] == "500M"
    assert conf["tuneNumWorkers"] == "8"
    assert set(conf) <= DOCUMENTED["mgmtd"]


def test_disabled_authentication_renders_consistently():
    extra = {**VARS, "beegfs_conn_disable_authentication": True, "beegfs_allow_insecure": True}
    conf = parse_conf(render_file(["beegfs", "beegfs_meta"], extra, ROLES / CASES[1][2]))
    assert conf["connDisableAuthentication"] == "true"
    assert conf["connAuthFile"] == ""


def test_repository_line_is_pinned_to_the_release():
    extra = {**VARS, "beegfs_repo_base_url": "https://mirror.invalid/release"}
    text = render_file(["beegfs"], extra, ROLES / "beegfs/templates/beegfs.list.j2")
    line = [ln for ln in text.splitlines() if ln.startswith("deb ")][0]
    assert line == (
        "deb [signed-by=/etc/apt/trusted.gpg.d/beegfs.asc] "
        "https://mirror.invalid/release/beegfs_7.4.3 bookworm non-free"
    )


def test_templates_exist_per_major_version():
    for role in ("beegfs_mgmtd", "beegfs_meta", "beegfs_storage", "beegfs_client"):
        assert (ROLES / role / "templates" / "7").is_dir()
