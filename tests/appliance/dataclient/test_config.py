"""Configuration: site aliases, defaults, errors naming the file and field."""

from __future__ import annotations

import pytest

from appliance.dataclient.config import load_config
from appliance.errors import ConfigError


def test_aliases_expand_and_urls_pass_through(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("sites:\n  lta: {url: 'davs://lta.example.org:8443/'}\n"
                        "  grid: gsiftp://gridftp.example.org:2811/store\nparallel: 8\n")
    cfg = load_config(cfg_file, env={})
    assert cfg.expand("lta:/obs/a.fits") == "davs://lta.example.org:8443/obs/a.fits"
    assert cfg.expand("lta:obs/a.fits") == "davs://lta.example.org:8443/obs/a.fits"
    assert cfg.expand("grid:/x") == "gsiftp://gridftp.example.org:2811/store/x"
    assert cfg.expand("https://h/x") == "https://h/x"
    assert cfg.expand("/local/path") == "/local/path" and cfg.expand("C:/x") == "C:/x"
    assert cfg.parallel == 8 and cfg.checksum == "adler32" and cfg.default_site is None
    assert cfg.site_for("davs://lta.example.org:8443/obs/a.fits").name == "lta"
    with pytest.raises(ConfigError, match="unknown site alias 'nope:'"):
        cfg.expand("nope:/x")


def test_bad_config_names_the_field(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("sites:\n  lta: {backend: http}\n")
    with pytest.raises(ConfigError, match="sites.lta"):
        load_config(f, env={})
    f.write_text("sites: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f, env={})


def test_proxy_defaults_follow_the_environment(tmp_path):
    cfg = load_config(None,
                      env={"X509_USER_PROXY": "/tmp/p", "DATACLIENT_CONFIG": str(tmp_path / "none.yaml")})
    assert str(cfg.proxy.path) == "/tmp/p" and cfg.proxy.lifetime_hours == 12
