"""Stack.reload without Docker: the parts that need no container."""

import pytest

from lab import reload as reload_mod
from lab import stack as stack_mod
from lab.errors import StackError
from lab.settings import Settings


def test_a_reload_looks_up_the_containers_of_the_services_it_reloads(tmp_path, monkeypatch):
    """reload finds each service's container through lab.containers (a regression: a
    local variable once shadowed the module, and every reload died with a NameError)."""
    asked = []

    def compose_container(dc, project, service):
        asked.append(service)
        raise StackError(f"{service} looked up")

    stack = stack_mod.Stack(Settings.from_env(env={"LAB_HOME": str(tmp_path)}))
    monkeypatch.setattr(stack.compose, "ps", lambda: [{"Service": "web1", "State": "running"}])
    monkeypatch.setattr(reload_mod, "compose_container", compose_container)
    with pytest.raises(StackError, match="web1 looked up"):
        stack.reload(dc=object(), services=("web1",))
    assert asked == ["web1"]
