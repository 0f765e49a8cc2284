"""PEM files on disk: written atomically and durably, read back with a reason when they
cannot be used. lab/pki.py stays in memory; this is where its blobs meet the disk."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def write_file(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write ``data`` to ``path`` atomically and durably.

    The data is fsynced before the rename and the folder after it, so a crash leaves
    the old file or the new one, never an empty or half-written key.

    Args:
        path: the target; its folder is created if absent.
        data: the bytes to write.
        private: 0600 from the first byte when True, else 0644.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            os.chmod(tmp, 0o600 if private else 0o644)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot sync a directory; the file itself is synced
    finally:
        os.close(fd)


def load_private_key(pem: bytes):
    """Load an unencrypted PEM private key of a type the lab signs with.

    Args:
        pem: the PEM text; other PEM blocks (certificates) around the key are skipped.

    Returns:
        An EC or RSA private key.

    Raises:
        ValueError: saying what is wrong: no key, an encrypted key, or another algorithm.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:  # cryptography's way of saying "this one needs a password"
        raise ValueError("key is encrypted (password-protected)") from None
    except UnsupportedAlgorithm:
        raise ValueError("key uses an algorithm this cryptography build cannot load") from None
    except ValueError:
        raise ValueError("key is not a PEM private key") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError(f"key is {type(key).__name__}, not one of ec, rsa")  # pki.KEY_TYPES
    return key


class NotAFile(ValueError):
    """A directory sits where the PKI keeps a file."""


class NoAccess(ValueError):
    """A PKI file exists but this user may not read it."""


def read(path: Path) -> bytes:
    """The bytes of a PKI file.

    Raises:
        ValueError: naming the path and why it cannot be read (NotAFile, NoAccess, or missing).
    """
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise NotAFile(f"{path} is a directory, not a file") from None
    except FileNotFoundError:
        raise ValueError(f"{path} is missing") from None
    except OSError as exc:
        raise NoAccess(f"{path} cannot be read ({exc.strerror or exc})") from None


def load_cert(path: Path) -> x509.Certificate:
    """The (first) certificate in a PEM file."""
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def load_chain(path: Path) -> list:
    """Every certificate in a PEM file, leaf first; [] when it does not load."""
    try:
        return x509.load_pem_x509_certificates(read(path))
    except ValueError:
        return []
