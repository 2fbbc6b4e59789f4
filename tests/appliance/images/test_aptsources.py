from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.images.aptsources import debian_sources_for, parse_deb822, parse_one_line

DEB822 = """\
Types: deb
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
"""


def test_parse_deb822() -> None:
    s = parse_deb822(DEB822)
    assert [(x.suite, x.components) for x in s] == [
        ("bookworm", ("main", "contrib")), ("bookworm-updates", ("main", "contrib")), ("bookworm-security", ("main",))]


def test_parse_one_line_with_options() -> None:
    s = parse_one_line("deb [arch=amd64 signed-by=/k.gpg] http://m.invalid/debian bookworm main # c\n# deb x y z\n")
    assert len(s) == 1 and s[0].uri == "http://m.invalid/debian" and s[0].components == ("main",)


def test_sources_for_suite(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "other.list").write_text("deb http://x.invalid/apt cloud-sdk main\n")
    lines = [s.line() for s in debian_sources_for("bookworm", ("main",), tmp_path)]
    assert lines == ["deb http://mirror.invalid/debian bookworm main",
                     "deb http://mirror.invalid/debian bookworm-updates main",
                     "deb http://mirror.invalid/debian-security bookworm-security main"]
    with pytest.raises(ConfigError, match="trixie"):
        debian_sources_for("trixie", ("main",), tmp_path)
