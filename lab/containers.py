"""The lab's compose containers: finding a service's container, and running commands in the
client container (curl and openssl, from a chosen source address)."""

from __future__ import annotations

import docker

from .errors import StackError


def compose_container(dc: docker.DockerClient, project: str, service: str):
    """The running container of ``service`` in compose ``project``."""
    found = dc.containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                  f"com.docker.compose.service={service}"]})
    if not found:
        raise StackError(f"{project}: service {service} is not running (`lab status`, `lab up`)")
    return found[0]


class ClientContainer:
    """Commands inside the lab's client container (curl and openssl; lab/client.py builds the
    requests)."""

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

    def exec_split(self, argv: list[str], env: dict | None = None) -> tuple[int, str, str]:
        """Run ``argv`` (with ``env`` added to its environment); return (exit code, stdout, stderr)."""
        rc, (out, err) = self.container.exec_run(list(argv), demux=True, environment=env)
        return rc, (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")
