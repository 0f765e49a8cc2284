"""The lab's images: the Debian base (present, pulled, or bootstrapped), one layer with every
role's packages (lab/package_layer.py), and one image per role on top of it.

Role images are tagged with a hash of their build folder and of the package layer's tag (the
base image and the package list), so a changed Dockerfile, package or base is rebuilt and an
unchanged one is reused.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import docker.errors

from .bootstrap import BASE_IMAGE, bootstrap_base_image
from .errors import ImageError, SettingsError
from . import package_layer, resources

# Another namespace (LAB_IMAGE_PREFIX, with LAB_BASE_IMAGE) lets a second checkout build and
# measure its images from nothing without touching the ones other lab instances use.
IMAGE_PREFIX = os.environ.get("LAB_IMAGE_PREFIX") or "mtls-lab"
_REFERENCE_RE = re.compile(r"[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?")
ROLES = {
    "haproxy": resources.path("haproxy"),
    "nginx": resources.path("nginx"),
    "client": resources.path("client"),
    "verifier": resources.path("verifier"),
    "dns": resources.path("dns"),
}


def _image_id(dc: docker.DockerClient, ref: str) -> str | None:
    try:
        return dc.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def ensure_base(dc: docker.DockerClient, ui, *, pull: bool = True, bootstrap: bool = True) -> str:
    """Make sure BASE_IMAGE exists: use it, else pull it, else bootstrap it.

    Returns:
        How it was obtained: "present", "pulled" or "bootstrapped".

    Raises:
        ImageError: when every allowed way failed, naming the fixes.
    """
    if _image_id(dc, BASE_IMAGE):
        return "present"
    pull_error = "pull not attempted"
    if pull:
        with ui.task(f"Pulling {BASE_IMAGE}") as task:
            try:
                for event in dc.api.pull(BASE_IMAGE, stream=True, decode=True):
                    if event.get("error"):  # some failures arrive in the stream, not as a status
                        raise docker.errors.APIError(event["error"], explanation=event["error"])
                    task.line(f"{event.get('status', '')} {event.get('progress', '')}")
                if _image_id(dc, BASE_IMAGE):
                    return "pulled"
                pull_error = "the pull ended without the image"
                task.fail()
            except docker.errors.APIError as exc:
                pull_error = exc.explanation or str(exc)
                task.line(f"pull failed: {pull_error}")
                task.fail()
    if not bootstrap:
        raise ImageError(f"{BASE_IMAGE} is not here and cannot be pulled ({pull_error}): "
                         "run `lab images` with bootstrapping allowed, or `docker load` it")
    ui.warn(f"cannot pull {BASE_IMAGE} ({pull_error.splitlines()[0][-80:]}); "
            "bootstrapping it from Debian packages")
    with ui.task(f"Bootstrapping {BASE_IMAGE} with debootstrap") as task:
        bootstrap_base_image(BASE_IMAGE, task)
    if not _image_id(dc, BASE_IMAGE):
        raise ImageError(f"bootstrapping {BASE_IMAGE} finished but Docker does not list it")
    return "bootstrapped"


def _dockerignore(folder: Path) -> list[str]:
    try:
        lines = (Path(folder) / ".dockerignore").read_text().splitlines()
    except OSError:
        return []
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def _ignored(rel: str, patterns: list[str]) -> bool:
    # Enough of .dockerignore for this repository's own files: globs and folder names.
    return any(fnmatch.fnmatch(rel, p) or rel.startswith(p + "/") for p in patterns)


def context_hash(folder: Path, base_id: str) -> str:
    """Hash of the files a build sends (minus .dockerignore) plus what it starts from (the
    package layer's tag, which follows the base image's id)."""
    patterns = _dockerignore(folder)
    digest = hashlib.sha256(base_id.encode())
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        rel = str(path.relative_to(folder))
        if not _ignored(rel, patterns):
            digest.update(rel.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def packages_ref(dc: docker.DockerClient) -> tuple[str, str]:
    """(the package layer's tag, its Dockerfile), built or not."""
    text = package_layer.dockerfile(BASE_IMAGE, package_layer.union(ROLES.values()))
    base_id = _image_id(dc, BASE_IMAGE) or "missing-base"
    return f"{IMAGE_PREFIX}/packages:{package_layer.tag_hash(base_id, text)}", text


def image_refs(dc: docker.DockerClient) -> dict:
    """role -> the tag its current build folder would have (built or not)."""
    layer, _ = packages_ref(dc)
    return {role: f"{IMAGE_PREFIX}/{role}:{context_hash(folder, layer)}"
            for role, folder in ROLES.items()}


def ensure_images(dc: docker.DockerClient, ui, *, rebuild: bool = False, pull: bool = True,
                  bootstrap: bool = True) -> dict:
    """Base image first, then the package layer, then every role image that is missing (or
    all, with ``rebuild``), side by side: they only copy files on top of the layer.

    Returns:
        role -> image reference, for compose.

    Raises:
        ImageError: naming the image and the failing build step.
    """
    check_names()
    ensure_base(dc, ui, pull=pull, bootstrap=bootstrap)
    layer, text = packages_ref(dc)
    if rebuild or not _image_id(dc, layer):
        with ui.task(f"Installing every role's packages into {layer}") as task:
            _build(dc, "packages", layer, rebuild, task, context=package_layer.context(text))
    refs = image_refs(dc)
    missing = {role: ref for role, ref in refs.items() if rebuild or not _image_id(dc, ref)}
    if not missing:
        return refs
    with ui.task(f"Building {', '.join(missing.values())}") as task:
        pool = ThreadPoolExecutor(max_workers=len(missing))
        try:
            builds = [pool.submit(_build, dc, role, ref, rebuild, task, layer=layer) for role, ref in missing.items()]
            for build in builds:
                build.result()  # the first failure, with its image named
        finally:  # on a failure or Ctrl-C, start no build that has not begun
            pool.shutdown(wait=False, cancel_futures=True)
    return refs


def check_names() -> None:
    """Raises SettingsError when LAB_BASE_IMAGE or LAB_IMAGE_PREFIX is no Docker image name."""
    for var, value in (("LAB_BASE_IMAGE", BASE_IMAGE), ("LAB_IMAGE_PREFIX", IMAGE_PREFIX)):
        if not _REFERENCE_RE.fullmatch(value) or (var == "LAB_IMAGE_PREFIX" and ":" in value):
            raise SettingsError(f"{var}={value!r} is not a Docker image name: use lowercase letters, "
                                "digits and . _ - /, e.g. LAB_IMAGE_PREFIX=my-lab LAB_BASE_IMAGE=my-lab/debian:trixie-slim")


def _build(dc: docker.DockerClient, role: str, ref: str, nocache: bool, task, *,
           layer: str = "", context=None) -> None:
    """Build ``ref``: a role's folder on top of ``layer``, or the in-memory ``context``."""
    repo, tag = ref.rsplit(":", 1)
    tail: list[str] = []
    source = ({"fileobj": context, "custom_context": True} if context is not None else
              {"path": str(ROLES[role]), "buildargs": {package_layer.BUILD_ARG: layer}})
    try:
        events = dc.api.build(tag=ref, rm=True, forcerm=True, pull=False, nocache=nocache,
                              decode=True, **source)
        for event in events:
            if "error" in event:
                raise ImageError(f"building {ref} failed: {event['error'].strip()}"
                                 f"{_tail(tail)}")
            for line in str(event.get("stream", "")).splitlines():
                tail = (tail + [line])[-8:]
                task.line(f"{role}: {line}")
                if line.startswith("Step "):
                    task.advance()
    except docker.errors.APIError as exc:
        raise ImageError(f"building {ref} failed: {exc.explanation or exc}") from exc
    dc.images.get(ref).tag(repo, "latest")


def _tail(lines: list[str]) -> str:
    shown = [line for line in lines if line.strip()][-4:]
    return ("; last output: " + " | ".join(shown)) if shown else ""
