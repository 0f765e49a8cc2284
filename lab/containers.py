"""The lab's compose containers: finding a service's container, and running commands in the
client container (curl and openssl, from a chosen source address)."""

from __future__ import annotations

import docker

from .errors import StackError

CLIENT_CERTS = "/certs"  # where compose mounts certs/ca.pem and certs/clients in the client


def compose_container(dc: docker.DockerClient, project: str, service: str):
    """The running container of ``service`` in compose ``project``."""
    found = dc.containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                  f"com.docker.compose.service={service}"]})
    if not found:
        raise StackError(f"{project}: service {service} is not running (`lab status`, `lab up`)")
    return found[0]


class ClientContainer:
    """curl and openssl inside the lab's client container, from a chosen source address."""

    def __init__(self, dc: docker.DockerClient, project: str):
        self.container = compose_container(dc, project, "client")

    def exec(self, argv: list[str]) -> tuple[int, str]:
        rc, out = self.container.exec_run(list(argv), demux=False)
        return rc, out.decode(errors="replace")

    def exec_stream(self, argv: list[str]):
        """Run ``argv``; yield its standard output as it comes (standard error is dropped:
        a message there could land inside a line of output)."""
        _, chunks = self.container.exec_run(list(argv), stream=True, demux=True)
        for out, _err in chunks:
            if out:
                yield out.decode(errors="replace")

    def exec_split(self, argv: list[str]) -> tuple[int, str, str]:
        """Run ``argv``; return (exit code, stdout, stderr)."""
        rc, (out, err) = self.container.exec_run(list(argv), demux=True)
        return rc, (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")

    def curl_argv(self, client: str | None, source_ip: str | None, urls: list[str], extra=(),
                  write_out: str = "\n%{http_code}\n", max_time: float = 5) -> list[str]:
        """curl with the lab CA, ``client``'s certificate, a new connection per URL."""
        argv = ["curl", "-sS", "--max-time", str(max_time), "--cacert", f"{CLIENT_CERTS}/ca.pem",
                "-H", "Connection: close", "-w", write_out]
        if client:
            argv += ["--cert", f"{CLIENT_CERTS}/clients/{client}.crt",
                     "--key", f"{CLIENT_CERTS}/clients/{client}.key"]
        if source_ip:
            argv += ["--interface", source_ip]
        return argv + list(extra) + list(urls)

    def get(self, client: str | None = "alice", source_ip: str | None = None, count: int = 1,
            url: str = "https://www.lab.test/whoami") -> list:
        """``count`` requests, each on a new connection, from ``source_ip``.

        Raises:
            StackError: when curl itself fails (its message included).
        """
        from .probe import _split_curl

        rc, out = self.exec(self.curl_argv(client, source_ip, [url] * count))
        replies = _split_curl(out)
        if rc != 0 or len(replies) != count:
            raise StackError(f"curl from the client container exited {rc} with {len(replies)}/{count} "
                             f"answers: {out.strip()[-300:]}")
        return replies

