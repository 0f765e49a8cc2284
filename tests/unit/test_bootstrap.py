"""Finding the Debian mirror an air-gapped machine's apt already uses."""

from lab import bootstrap


def test_deb822_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example.internal/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example.internal/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n")
    assert bootstrap.find_mirrors(tmp_path, env={}) == (
        "http://mirror.example.internal/debian", "http://mirror.example.internal/debian-security")


def test_one_line_sources_with_options_and_comments(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# local mirror\ndeb [arch=amd64 signed-by=/x.gpg] https://apt.corp.example/debian/ bookworm main\n"
        "deb-src http://ignored.example/debian bookworm main\n")
    mirror, security = bootstrap.find_mirrors(tmp_path, env={})
    assert mirror == "https://apt.corp.example/debian"
    assert security == bootstrap.DEFAULT_SECURITY


def test_env_override_and_fallback(tmp_path):
    assert bootstrap.find_mirrors(tmp_path, env={"LAB_DEBIAN_MIRROR": "http://m/debian"})[0] == "http://m/debian"
    assert bootstrap.find_mirrors(tmp_path, env={}) == (bootstrap.DEFAULT_MIRROR, bootstrap.DEFAULT_SECURITY)
