"""Who a request claims to be and whom it trusts: one record for the client certificate layout.

A lab client presents certs/clients/<name>.crt and .key and trusts only the lab CA
(certs/ca.pem). The client container sees the same files elsewhere: compose mounts
certs/clients at /certs/clients and the rendered trust folder at /certs/trust
(/certs/ca.pem links into it, see client/Dockerfile). This module is the one place that
knows both sets of paths; a certificate configures the client, as trustme's
``configure_cert(ctx)`` does.
"""

from __future__ import annotations

import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .certs import CLIENT_NAMES, Layout
from .errors import CertsMissing

CONTAINER_CERTS = PurePosixPath("/certs")  # where compose mounts the certificates in the client container


@dataclass(frozen=True)
class Credentials:
    """A client certificate (or none) and the CA to trust, on the host and in the client container.

    ``name`` is a lab client (certs/clients/<name>); ``cert``/``key`` override its files on
    the host for hand-made cases (a leaf without its chain, a key that does not match), and
    ``ca`` the CA trusted (a wrong CA is just another file). ``certs_dir`` may be None for
    the client container, which has its own copy.
    """

    certs_dir: Path | None
    name: str | None = "alice"
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    @classmethod
    def of(cls, certs_dir: Path, client: "str | None | Credentials") -> "Credentials":
        """``client`` as Credentials: a name (None: no certificate) or Credentials already."""
        return client if isinstance(client, Credentials) else cls(Path(certs_dir), client)

    @property
    def presents(self) -> bool:
        """Whether a client certificate is presented at all."""
        return bool(self.name or self.cert)

    # -- on the host ---------------------------------------------------------------
    def _layout(self) -> Layout:
        if self.certs_dir is None:
            raise ValueError("these credentials name no certs folder: they are for the client container")
        return Layout(Path(self.certs_dir))

    @property
    def ca_path(self) -> Path:
        return Path(self.ca) if self.ca else self._layout().ca_cert

    @property
    def cert_path(self) -> Path | None:
        if self.cert:
            return Path(self.cert)
        return self._layout().client_cert(self.name) if self.name else None

    @property
    def key_path(self) -> Path | None:
        if self.key:
            return Path(self.key)
        return self._layout().client_key(self.name) if self.name else None

    def check(self) -> "Credentials":
        """These credentials, when their files exist.

        Raises:
            CertsMissing: naming the missing file and the fix.
        """
        for path in (self.ca_path, self.cert_path, self.key_path):
            if path is not None and not path.exists():
                raise CertsMissing(f"{path} is missing: run `lab certs` (clients: {', '.join(CLIENT_NAMES)})")
        return self

    def configure(self, ctx: ssl.SSLContext) -> None:
        """Trust the lab CA and present the certificate in ``ctx`` (trustme's configure_cert).

        Raises:
            ssl.SSLError: when OpenSSL refuses the pair (e.g. KEY_VALUES_MISMATCH).
        """
        ctx.load_verify_locations(str(self.ca_path))
        if self.presents:
            ctx.load_cert_chain(str(self.cert_path), str(self.key_path))

    def ssl_context(self, tls_version: str | None = None, check_hostname: bool = True) -> ssl.SSLContext:
        """A client context that trusts only the lab CA and presents this certificate.

        Args:
            tls_version: pin the protocol ("TLSv1", "TLSv1_1", "TLSv1_2", "TLSv1_3"); old ones are
                allowed on the client side (SECLEVEL=0) so that the server is the one refusing.
            check_hostname: False for a container address the certificate does not name (the CA
                is still checked).
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = check_hostname
        if tls_version:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                version = getattr(ssl.TLSVersion, tls_version)
                ctx.minimum_version = ctx.maximum_version = version
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        self.configure(ctx)
        return ctx

    def requests_args(self) -> dict:
        """``verify``/``cert`` for a requests session or call."""
        args = {"verify": str(self.ca_path)}
        if self.presents:
            args["cert"] = (str(self.cert_path), str(self.key_path))
        return args

    def curl_host_args(self) -> list[str]:
        """curl's options for these credentials, on the host."""
        argv = ["--cacert", str(self.ca_path)]
        if self.presents:
            argv += ["--cert", str(self.cert_path), "--key", str(self.key_path)]
        return argv

    # -- in the client container ------------------------------------------------------
    @property
    def container_ca(self) -> PurePosixPath:
        return CONTAINER_CERTS / "ca.pem"

    @property
    def container_cert(self) -> PurePosixPath | None:
        return CONTAINER_CERTS / "clients" / f"{self.name}.crt" if self.name else None

    @property
    def container_key(self) -> PurePosixPath | None:
        return CONTAINER_CERTS / "clients" / f"{self.name}.key" if self.name else None

    def curl_container_args(self) -> list[str]:
        """curl's options for these credentials, in the client container.

        Raises:
            ValueError: for hand-made files, which the container does not see.
        """
        if self.cert or self.key or self.ca:
            raise ValueError("the client container sees certs/clients and the lab CA only: "
                             "hand-made files are host-only")
        argv = ["--cacert", str(self.container_ca)]
        if self.name:
            argv += ["--cert", str(self.container_cert), "--key", str(self.container_key)]
        return argv
