"""The shared package layer: every role's `packages` file, installed once (lab/package_layer.py)."""

from lab import images, package_layer


def test_every_role_declares_its_packages_and_the_layer_installs_them_all():
    wanted = {"haproxy": {"haproxy", "curl"}, "nginx": {"nginx", "libnginx-mod-http-modsecurity", "modsecurity-crs"},
              "client": {"iproute2", "openssl", "ca-certificates"}, "verifier": {"python3", "openssl"}}
    for role, packages in wanted.items():
        assert packages <= set(package_layer.role_packages(images.ROLES[role])), role
    everything = package_layer.union(images.ROLES.values())
    assert everything == sorted(set(everything)) and set().union(*wanted.values()) <= set(everything)
    text = package_layer.dockerfile("debian:trixie-slim", everything)
    assert text.count("apt-get update") == 1 and text.count("apt-get install") == 1
    assert all(f"        {p}" in text for p in everything)


def test_role_dockerfiles_start_from_the_layer_and_install_nothing():
    for role, folder in images.ROLES.items():
        text = (folder / "Dockerfile").read_text()
        assert f"ARG {package_layer.BUILD_ARG}=" in text and f"FROM ${{{package_layer.BUILD_ARG}}}" in text, role
        assert "apt-get" not in text, role


def test_a_new_role_needs_only_its_packages_file(tmp_path):
    (tmp_path / "ntp").mkdir()
    (tmp_path / "ntp" / "packages").write_text("# a time server\nchrony ntpsec-ntpdate  # two on a line\n\n")
    assert package_layer.role_packages(tmp_path / "ntp") == ["chrony", "ntpsec-ntpdate"]
    assert package_layer.role_packages(tmp_path) == []  # no file: nothing to install
    before = package_layer.union(images.ROLES.values())
    after = package_layer.union([*images.ROLES.values(), tmp_path / "ntp"])
    assert set(after) - set(before) == {"chrony", "ntpsec-ntpdate"}
    # a new package list is a new layer tag, and so new role tags
    assert package_layer.tag_hash("base", package_layer.dockerfile("b", before)) != \
        package_layer.tag_hash("base", package_layer.dockerfile("b", after))
    assert package_layer.tag_hash("base1", "x") != package_layer.tag_hash("base2", "x")


def test_the_layer_context_holds_only_its_dockerfile():
    import tarfile
    with tarfile.open(fileobj=package_layer.context("FROM x\n")) as tar:
        assert tar.getnames() == ["Dockerfile"]
        assert tar.extractfile("Dockerfile").read() == b"FROM x\n"
