#!/usr/bin/python
"""Ansible module: run the rig probe for every GPU pair and judge each pair
(rigctl.core.p2pverdict), in one round trip. Read-only unless asked to keep the record."""

from __future__ import annotations

DOCUMENTATION = r"""
module: p2p_probe
short_description: Measure every GPU pair with the rig probe and give the per-pair P2P verdict
description:
  - Runs the rig probe (the simulated one on a lab rig: its results say simulated) once with
    peer access and once with C(--no-p2p), reads each GPU's PCIe link and NVLink bridges, and
    judges every ordered pair with rigctl.core.p2pverdict (data intact both ways, faster than
    staged through host memory, at least the floor of the narrowest link's theory).
  - O(record) keeps the evidence in C(/run/rigctl/p2p-evidence.json) (this boot only), which
    the nccl role's C(nccl_setup) reads; never in check mode. O(use_record) answers from this
    boot's record instead of running the probe again when it still matches the rig.
  - Every GPU pair whose copies go wrong, fail, are no faster than staged or are below the
    floor is a warning (the pair, the evidence, the fix); pairs without peer access are not
    (the stock driver's normal state; rigctl verify judges whether P2P was expected).
  - Changes nothing on the rig otherwise (changed is always false).
options:
  floors: {type: dict, default: {}, description: "min_link_fraction, min_gbps, pairs (rig_p2p_*)"}
  record: {type: bool, default: false}
  use_record: {type: bool, default: false}
  size_mib: {type: int, default: 32}
  iterations: {type: int, default: 5}
"""

RETURN = r"""
evidence: {description: "probe outputs, links, NVLink, topo", returned: always, type: dict}
verdict: {description: "p2pverdict.judge: per pair verdict; null without pairs", returned: always, type: dict}
evidence_from: {description: "measured now / recorded this boot / why none", returned: always, type: str}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import nccl, p2pverdict


def main():
    module = AnsibleModule(
        argument_spec=dict(
            floors=dict(type="dict", default={}),
            record=dict(type="bool", default=False),
            use_record=dict(type="bool", default=False),
            size_mib=dict(type="int", default=32),
            iterations=dict(type="int", default=5),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["use_record"]:
        evidence, evidence_from = nccl.read_evidence(
            run=True, record=p["record"] and not module.check_mode, size_mib=p["size_mib"],
            iterations=p["iterations"])
        if evidence is None:
            evidence = {"available": False, "reason": evidence_from}
    else:
        evidence = p2pverdict.collect(size_mib=p["size_mib"], iterations=p["iterations"])
        evidence_from = "measured now" if evidence.get("available") else (evidence.get("reason") or "")
        if p["record"] and not module.check_mode and evidence.get("available"):
            try:
                p2pverdict.write_evidence(evidence)
            except OSError as exc:
                module.warn("could not keep the P2P evidence in %s: %s" % (p2pverdict.EVIDENCE_PATH, exc))
    unset = ("", "none", "null")
    floors = {k: v for k, v in (p["floors"] or {}).items()
              if v not in (None, {}) and not (isinstance(v, str) and v.strip().lower() in unset)}
    for key in ("min_link_fraction", "min_gbps"):  # templated values may arrive as strings
        if isinstance(floors.get(key), str):
            try:
                floors[key] = float(floors[key])
            except ValueError:
                module.fail_json(msg="floors.%s is not a number: %r" % (key, floors[key]))
    verdict = p2pverdict.judge_evidence(evidence, floors or None)
    # Pairs without peer access are the stock driver's normal state (rigctl verify judges
    # whether P2P was expected); copies that go wrong, slower than staged, or slow are not.
    for pair in (verdict or {}).get("pairs") or []:
        if pair["verdict"] in ("wrong-data", "error", "no-gain", "slow"):
            module.warn("P2P: %s. Fix: %s" % (pair["reason"], pair["fix"]))
    module.exit_json(changed=False, evidence=evidence, verdict=verdict, evidence_from=evidence_from)


if __name__ == "__main__":
    main()
