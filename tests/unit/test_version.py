"""One version, everywhere it is shown."""

import re
from pathlib import Path

from click.testing import CliRunner

import lab
from lab.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def test_cli_reports_the_package_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip().endswith(lab.__version__)


def test_the_changelog_has_an_entry_for_this_version():
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert releases, "CHANGELOG.md lists no release"
    assert releases[0] == lab.__version__, "the newest CHANGELOG entry is not lab.__version__"
