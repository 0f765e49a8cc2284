"""Changing the DNS records: PowerDNS's HTTP API, Route 53's ChangeResourceRecordSets here.

The API listens on the DNS container's loopback with a key its start script made for that
start (dns/start.sh), so the operator reaches it through `docker exec` (curl in the DNS
container) and no client on the internet or vpc networks does. `lab migrate` moves
www.lab.test's alias with it; a restart of the DNS server (`lab reload`, `lab up`) starts
again from the rendered zone, where the alias is the NLB.
"""

from __future__ import annotations

import json

from . import route53
from .containers import compose_container
from .designs import DNS
from .errors import StackError

ZONE_URL = (f"http://127.0.0.1:{route53.API_PORT}/api/v1/servers/localhost/zones/"
            f"{route53.ZONE}.")
KEY_HEADER = f"@{route53.API_DIR}/api.header"  # curl reads the X-API-Key header from the file
STATUS_MARK = "\n@@status@@ "


class DnsApi:
    """The DNS server's HTTP API, from the operator's side."""

    def __init__(self, stack, dc):
        self.settings = stack.settings
        self.port = route53.host_port(stack)
        self.container = compose_container(dc, stack.settings.project, DNS.name)

    def _call(self, method: str, body: dict | None = None) -> dict:
        argv = ["curl", "-sS", "--max-time", "5", "-X", method, "-H", KEY_HEADER,
                "-w", STATUS_MARK + "%{http_code}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        rc, out = self.container.exec_run(argv + [ZONE_URL])
        text, _, status = out.decode(errors="replace").rpartition(STATUS_MARK)
        if rc != 0 or not status.strip().startswith("2"):
            raise StackError(f"the DNS server's API refused {method} ({status.strip() or f'curl exit {rc}'}: "
                             f"{text.strip()[-300:] or 'no answer'}): see `lab logs {DNS.name}`")
        return json.loads(text) if text.strip() else {}

    def alias(self) -> str:
        """The load balancer www.lab.test's primary is an alias to now (from the API)."""
        zone = self._call("GET")
        ips = {self.settings.lb_ips(s)[0]: s for s in route53.ALIAS_TARGETS}
        for rrset in zone.get("rrsets", []):
            if rrset["name"] == f"{route53.RECORD}." and rrset["type"] == "LUA":
                content = rrset["records"][0]["content"]
                found = sorted((content.find(f"'{ip}'"), s) for ip, s in ips.items() if f"'{ip}'" in content)
                if found:
                    return found[0][1]
        raise StackError(f"the DNS server holds no failover record for {route53.RECORD}: `lab reload dns` "
                         "restores the rendered zone")

    def set_alias(self, service: str) -> dict:
        """Make www.lab.test's primary an alias to ``service`` (evaluating its target health),
        the secondary staying the sorry site. Returns the record as it now is."""
        if service not in route53.ALIAS_TARGETS:
            raise StackError(f"{route53.RECORD} can be an alias to {' or '.join(route53.ALIAS_TARGETS)}, "
                             f"not {service!r}")
        rec = route53.record(self.settings, service)
        name = f"{route53.RECORD}."
        self._call("PATCH", {"rrsets": [
            {"name": name, "type": "LUA", "ttl": rec["ttl"], "changetype": "REPLACE",
             "records": [{"content": f'A "{rec["lua"]}"', "disabled": False}]},
            {"name": f"primary.{name}", "type": "A", "ttl": rec["ttl"], "changetype": "REPLACE",
             "records": [{"content": rec["primary"]["ip"], "disabled": False}]},
        ]})
        return rec

    def wait_answer(self, address: str, timeout: float = 15.0) -> float:
        """Wait until the DNS server answers www.lab.test with ``address``; the seconds it took."""
        return route53.wait_answer(self.port, address, timeout)
