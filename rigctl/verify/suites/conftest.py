"""Fixtures of the rig verification suites.

The same suites run from `rigctl verify` (testinfra over SSH with the inventory's SSH
settings and known_hosts), from Molecule's verify step, and by hand with
`pytest --hosts=ansible://HOST --ansible-inventory=INV rigctl/verify/suites`.
The desired state comes from the inventory; the observed state from the host itself,
gathered by the same `rig_facts` module the playbooks use.
"""

from __future__ import annotations

import json
import os

import pytest

from rigctl.verify.checks import CheckWarned, RigUnreachable, connection_error

_FACTS: dict[str, dict] = {}
_LOST: dict[str, str] = {}


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "reads_gpu: the check reads the GPU layer; on a simulated rig its pass is "
        "'passed (simulated)'",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    # Under plain pytest (Molecule, by hand) a warn-policy check is a skip naming the
    # problem; `rigctl verify` reports it as its own `warn` outcome.
    if (
        call.excinfo is not None
        and isinstance(call.excinfo.value, CheckWarned)
        and not os.environ.get("RIGCTL_VERIFY_WORKER")
    ):
        exc = call.excinfo.value
        report.outcome = "skipped"
        report.longrepr = (str(item.path), 0, f"Skipped: warn: {exc.what}: {exc.found}")


def _host_name(host) -> str:
    return host.backend.get_hostname()


def _gather(host) -> dict:
    name = _host_name(host)
    if name in _LOST:
        raise RigUnreachable(_LOST[name])
    if name not in _FACTS:
        try:
            result = host.ansible("rig_facts", "", become=True, check=False)
        except Exception as exc:
            lost = connection_error(exc)
            if lost:
                _LOST[name] = lost
                raise RigUnreachable(lost) from None
            pytest.fail(f"could not gather facts from {name}: {exc}")
        if result.get("unreachable"):
            _LOST[name] = connection_error(f"UNREACHABLE! {result}") or "unreachable"
            raise RigUnreachable(_LOST[name])
        if result.get("failed") or "ansible_facts" not in result:
            pytest.fail(f"rig_facts failed on {name}: {result.get('msg') or result}")
        _FACTS[name] = result["ansible_facts"]["rig_host"]
    return _FACTS[name]


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
    return _gather(host)


@pytest.fixture(autouse=True)
def _gpu_view(request):
    """Records the rig's gpu_view on every result (``gpu_view`` property; JUnit carries
    it). A check marked ``reads_gpu`` needs it: its pass on simulated GPUs is reported as
    ``passed (simulated)`` by rigctl verify."""
    if "host" not in request.fixturenames:
        return
    host = request.getfixturevalue("host")
    marked = request.node.get_closest_marker("reads_gpu") is not None
    try:
        facts = _gather(host) if marked else _FACTS.get(_host_name(host))
    except RigUnreachable:
        raise
    except Exception:
        if marked:
            raise
        facts = None
    if facts:
        request.node.user_properties.append(("gpu_view", facts["gpu_view"]))
        if marked:
            request.node.user_properties.append(("reads_gpu", True))
            if facts["gpu_view"] == "none":
                # nothing to read: never a pass on a host without GPUs
                pytest.skip("no NVIDIA GPU on this host (gpu_view none): a GPU check does not apply")


_P2P: dict[str, dict] = {}


def p2p_floors(rig_vars: dict) -> dict:
    """The P2P verdict's floors from the rig variables (rig_p2p_*)."""
    floors = {"min_link_fraction": rig_vars.get("rig_p2p_min_link_fraction"),
              "pairs": rig_vars.get("rig_p2p_pair_floors") or {}}
    if rig_vars.get("rig_p2p_min_gbps") is not None:
        floors["min_gbps"] = rig_vars["rig_p2p_min_gbps"]
    return {k: v for k, v in floors.items() if v is not None}


@pytest.fixture
def p2p_evidence(host, rig_vars) -> dict:
    """The rig probe run now on the rig (the simulated probe on a lab rig), every GPU pair
    judged by rigctl.core.p2pverdict with the rig's floors: the p2p_probe module's answer
    (``evidence``, ``verdict``, ``evidence_from``), once per host. Read-only (check mode)."""
    name = _host_name(host)
    if name not in _P2P:
        args = {"floors": p2p_floors(rig_vars)}
        result = host.ansible("p2p_probe", json.dumps(args), become=True, check=True)
        if result.get("failed"):
            pytest.fail(f"p2p_probe failed on {name}: {result.get('msg')}")
        _P2P[name] = result
    return _P2P[name]
