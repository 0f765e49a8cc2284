"""Shared fixtures: a fresh PKI in a temporary folder (no Docker needed)."""

import pytest

from lab import certs


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory):
    """A complete lab PKI, generated once per session."""
    root = tmp_path_factory.mktemp("pki") / "certs"
    certs.ensure_pki(root)
    return root


@pytest.fixture(scope="session")
def layout(pki_dir):
    return certs.Layout(pki_dir)
