"""What one request got: the lab's single answer type, whichever way it was sent.

An HTTP answer (status, body, the headers the lab reads) or why there was none (the TLS
alert a server ended the handshake with, a client that refused to start, a connection
that failed), with what measured it: curl's exit code when curl sent it, the seconds it
took, the source address and the command a person could type to send it again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .errors import StackError

# OpenSSL's words for the TLS alert a server sent, as curl reports them: "... alert unknown ca"
# (TLS 1.3 sends the client's certificate after the server's Finished, so its refusal
# arrives with the first read: curl exit 56 instead of 35, with the same alert).
ALERT = re.compile(r"(?:tlsv1[0-9]? |sslv3 )?alert ([a-z ]+?)(?:,|$| errno)", re.I | re.M)
# The same alert as Python's ssl module names it: SSLError.reason "TLSV1_ALERT_UNKNOWN_CA".
ALERT_CODE = re.compile(r"^(?:TLSV1[0-9]?|SSLV3)_ALERT_([A-Z_]+)$")
CLIENT_REFUSED = "client-refused: "  # the client library would not even start (a key that does not match)


@dataclass
class Answer:
    """One request's outcome.

    status: the HTTP status, 0 when no HTTP answer came. error: why not, or what went wrong
    at the transport (curl's standard error; OpenSSL's reason such as
    TLSV1_ALERT_PROTOCOL_VERSION; "client-refused: KEY_VALUES_MISMATCH"), "" when clean.
    headers: the response headers the lab reads, names in lower case (x-backend, set-cookie).
    curl_exit: curl's exit code (0 = no transport error), None when curl was not used.
    """

    status: int = 0
    body: object = ""
    headers: dict = field(default_factory=dict)
    error: str = ""
    curl_exit: int | None = None
    seconds: float | None = None
    source: str | None = None
    argv: list = field(default_factory=list)

    @property
    def json(self) -> dict:
        return self.body if isinstance(self.body, dict) else {}

    @property
    def backend(self) -> str:
        """Who answered: the X-Backend header, else the body's "backend", else ""."""
        return self.headers.get("x-backend") or self.json.get("backend") or ""

    @property
    def set_cookie(self) -> str:
        return self.headers.get("set-cookie", "")

    @property
    def client_verify(self) -> str:
        """nginx's $ssl_client_verify as the backend reported it (SUCCESS, NONE, FAILED:...)."""
        return self.json.get("client_verify", "")

    @property
    def alert(self) -> str:
        """The TLS alert the server ended the handshake with ("unknown ca"), or ""."""
        code = ALERT_CODE.match(self.error)
        if code:
            return code.group(1).replace("_", " ").lower()
        match = ALERT.search(self.error)
        return match.group(1).strip().lower() if match else ""

    @property
    def handshake_failed(self) -> bool:
        """The server refused in the TLS handshake: no HTTP answer and a TLS alert from it
        (not a client-side problem such as an unreadable certificate: curl exit 58)."""
        return self.status == 0 and bool(self.alert)

    @property
    def client_refused(self) -> bool:
        return self.error.startswith(CLIENT_REFUSED)

    @property
    def transport_ok(self) -> bool:
        return not self.curl_exit and (self.status != 0 or not self.error)

    @property
    def ok(self) -> bool:
        """Answered 200 (by a backend), with no transport error."""
        return self.transport_ok and self.status == 200

    @property
    def sorry(self) -> bool:
        """Answered by the sorry page (every backend down): not an error, not served either."""
        return self.transport_ok and self.backend in ("sorry", "cdn")  # in the load balancer, or the sorry site

    @property
    def verdict(self) -> str:
        """One word for a matrix: nginx's verdict when HTTP answered, else the error."""
        return self.client_verify if self.status else self.error

    def served(self) -> "Answer":
        """This answer, when HTTP answered.

        Raises:
            StackError: naming the transport failure (curl's exit code and message).
        """
        if self.status:
            return self
        how = f"curl exited {self.curl_exit}" if self.curl_exit is not None else "no HTTP answer"
        raise StackError(f"{how} from {self.source or 'the host'}: {self.error.strip()[-300:] or '(no message)'}")

    def __str__(self) -> str:
        if self.status:
            return f"HTTP {self.status} {self.client_verify or self.backend}".strip()
        return f"no HTTP answer: {self.error or f'curl exit {self.curl_exit}'}"


def parse_body(text: str) -> object:
    """JSON when the body (or its last line, after curl's own output) is JSON, else the text."""
    text = text.strip()
    for candidate in (text, text.splitlines()[-1] if text else ""):
        try:
            return json.loads(candidate) if candidate else ""
        except ValueError:
            continue
    return text
