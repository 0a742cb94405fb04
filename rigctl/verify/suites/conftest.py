"""Fixtures of the rig verification suites.

The same suites run from `rigctl verify` (testinfra over SSH with the inventory's SSH
settings and known_hosts), from Molecule's verify step, and by hand with
`pytest --hosts=ansible://HOST --ansible-inventory=INV rigctl/verify/suites`.
The desired state comes from the inventory; the observed state from the host itself,
gathered by the same `rig_facts` module the playbooks use.
"""

from __future__ import annotations

import pytest

_FACTS: dict[str, dict] = {}


def _host_name(host) -> str:
    return host.backend.get_hostname()


@pytest.fixture
def rig_vars(host) -> dict:
    """The host's variables from the inventory, rig variables completed with defaults."""
    try:
        variables = dict(host.ansible.get_variables())
    except Exception as exc:  # not the ansible backend: no inventory to read
        pytest.skip(f"the desired state comes from an Ansible inventory ({exc})")
    from rigctl.inventory.schema import defaults

    for name, value in defaults().items():
        variables.setdefault(name, value)
    return variables


@pytest.fixture
def rig_facts(host) -> dict:
    """Facts from the rig_facts module, gathered once per host per session."""
    name = _host_name(host)
    if name not in _FACTS:
        try:
            result = host.ansible("rig_facts", "", become=True, check=False)
        except Exception as exc:
            pytest.fail(f"could not gather facts from {name}: {exc}")
        if result.get("failed") or "ansible_facts" not in result:
            pytest.fail(f"rig_facts failed on {name}: {result.get('msg') or result}")
        _FACTS[name] = result["ansible_facts"]["rig"]
    return _FACTS[name]
