"""NCCL, one test per fact a rig owner cares about: the version asked for (library, headers
and package agree), the build for the rig's CUDA, and /etc/nccl.conf saying what the rig's
P2P state calls for, every line with its reason. The P2P setting is read back the way NCCL
reads it (nccl.allowed_pairs) and compared with what the rig probe measures between every
pair now (the p2p_evidence fixture): no pair whose copies failed or ran staged may be let
through.

Rigs whose inventory leaves rig_nccl_version null are not managed: these checks skip."""

from __future__ import annotations

import json

import pytest

from rigctl.core import cuda, nccl
from rigctl.verify.checks import attach, expect, reads_gpu


@pytest.fixture
def want(rig_vars) -> dict:
    if rig_vars.get("rig_nccl_version") is None:
        pytest.skip("rig_nccl_version is null: NCCL is not managed on this rig")
    return rig_vars


def _nccl_version(want) -> str:
    return want["rig_nccl_version"].split("-")[0]


@pytest.fixture
def package(host, want) -> dict:
    pkg = host.package("libnccl2")
    return {"installed": pkg.is_installed,
            "version": pkg.version if pkg.is_installed else None,
            "build": cuda.parse_nccl_deb_version(pkg.version) if pkg.is_installed else None}


def test_nccl_package_is_the_version_asked_for(want, package):
    expect(
        package["installed"] and cuda.nccl_version_matches(package["version"], want["rig_nccl_version"]),
        "libnccl2 is the NCCL version asked for (rig_nccl_version)",
        expected=want["rig_nccl_version"],
        found=package["version"] or "not installed",
        fix="run `rigctl provision host HOST` (role nccl)",
    )


def test_nccl_library_is_the_version_asked_for(host, want):
    res = host.run("grep -a -o -m1 'NCCL version [0-9.]*+cuda[0-9.]*' "
                   "$(/sbin/ldconfig -p | awk '/libnccl\\.so\\.2 /{print $NF; exit}')")
    found = cuda.parse_nccl_library_version(res.stdout)
    expect(
        found is not None and found["nccl"] == _nccl_version(want),
        "the libnccl.so.2 the dynamic linker finds is that version",
        expected=_nccl_version(want),
        found=found or (res.stdout + res.stderr).strip()[-200:] or "libnccl.so.2 not in ldconfig -p",
        fix="run `rigctl provision host HOST`; another libnccl.so.2 earlier in the library path shadows it",
    )


def test_nccl_headers_match_the_library(host, want):
    f = host.file("/usr/include/nccl.h")
    try:
        found = cuda.parse_nccl_header_version(f.content_string) if f.exists else None
    except ValueError as exc:
        found = str(exc)
    expect(
        found == _nccl_version(want),
        "nccl.h (libnccl-dev) is the same version as the library",
        expected=_nccl_version(want),
        found=found or "no /usr/include/nccl.h",
        fix="run `rigctl provision host HOST` (installs libnccl-dev of the same build)",
    )


def test_nccl_build_fits_the_cuda_toolkit(want, package):
    cuda_version = want.get("rig_cuda_version")
    if cuda_version is None:
        pytest.skip("rig_cuda_version is null: no toolkit to match")
    build = (package["build"] or {}).get("cuda")
    expect(
        build is not None and cuda.parse_cuda_version(build)[0] == cuda.parse_cuda_version(cuda_version)[0]
        and cuda.parse_cuda_version(build) <= cuda.parse_cuda_version(cuda_version),
        "the NCCL build is for the rig's CUDA major release, not newer than the toolkit",
        expected=f"+cuda{cuda.parse_cuda_version(cuda_version)[0]}.x up to {cuda_version}",
        found=package["version"] or "not installed",
        fix="run `rigctl provision host HOST` (it picks the build for rig_cuda_version)",
    )


@pytest.fixture
def conf_check(host, want) -> dict:
    """The nccl role's own module in check mode: what nccl.conf should say now, from the live
    rig, and whether the file differs."""
    args = {"phase": "conf", "env": want.get("rig_nccl_env") or {}}
    if want.get("rig_nccl_socket_ifname"):
        args["socket_ifname"] = want["rig_nccl_socket_ifname"]
    if want.get("rig_driver_version"):
        args["driver_flavor"] = want.get("rig_driver_flavor")
    result = host.ansible("nccl_setup", json.dumps(args), become=True, check=True)
    if result.get("failed"):
        pytest.fail(f"nccl_setup failed: {result.get('msg')}")
    return result


@reads_gpu
def test_nccl_conf_matches_the_rigs_p2p_state(host, conf_check):
    f = host.file(nccl.CONF_PATH)
    have = nccl.parse_conf(f.content_string) if f.exists else {}
    p2p = conf_check["p2p"]
    want_lines = {e["key"]: e["value"] for e in conf_check["settings"]}
    expect(
        f.exists and not conf_check["changed"] and have == want_lines,
        f"/etc/nccl.conf says what the rig's P2P state calls for ({p2p['state']}: "
        f"{p2p['pairs_ok']}/{p2p['pairs_total']} GPU pairs with P2P)",
        expected=want_lines,
        found=have or "no /etc/nccl.conf",
        fix="run `rigctl provision host HOST` (role nccl rewrites it from the rig probe's "
        "per-pair verdict, or nvidia-smi topo -p2p r where the probe cannot run)",
    )


@reads_gpu
def test_nccl_conf_p2p_follows_the_probe_evidence(host, want, p2p_evidence):
    """The written file read the way NCCL reads it (the pairs it lets P2P run on), compared
    with what the rig probe measured between every pair just now."""
    f = host.file(nccl.CONF_PATH)
    text = f.content_string if f.exists else ""
    conf = nccl.parse_conf(text) if text else {}
    why = nccl.comments(text)
    p2p_key = next((k for k in nccl.P2P_KEYS if k in conf), None)
    attach("nccl", {"settings": [{"key": k, "value": v, "reason": why.get(k)} for k, v in conf.items()],
                    "evidence": why.get(p2p_key) if p2p_key else None})
    verdict = p2p_evidence.get("verdict")
    if not verdict or not verdict.get("unordered"):
        pytest.skip("the rig probe measured no GPU pair here "
                    f"({p2p_evidence.get('evidence_from') or 'no probe'}): topo -p2p r is the evidence, "
                    "test_nccl_conf_matches_the_rigs_p2p_state compares the file with it")
    evidence = p2p_evidence["evidence"]
    devices = [f"GPU{g}" for g in verdict["gpus"]]
    broken = [[f"GPU{a}", f"GPU{b}"] for a, b in verdict["not_p2p_pairs"]]
    allowed = nccl.allowed_pairs(conf, evidence.get("topo_links"), devices)
    let_through = broken if allowed is None else [p for p in allowed if p in broken]
    reasons = {(p["src"], p["dst"]): p["reason"] for p in verdict["pairs"] if not p["p2p"]}
    found = "; ".join(r for (a, b), r in reasons.items() if [f"GPU{min(a, b)}", f"GPU{max(a, b)}"]
                      in let_through) or (f"{p2p_key}={conf[p2p_key]}" if p2p_key else "no P2P setting")
    expect(
        f.exists and not let_through,
        "nccl.conf lets NCCL use P2P on no GPU pair whose copies failed, ran staged or were no "
        "faster than staged (the rig probe, now" + (", simulated GPUs)" if verdict.get("simulated") else ")"),
        expected=f"P2P off for {', '.join('-'.join(p) for p in broken) or 'no pair'}",
        found=found if let_through else (found or "no /etc/nccl.conf"),
        fix="run `rigctl provision host HOST` (the nccl role writes nccl.conf from the probe's "
        "verdict); an inventory NCCL_P2P_* in rig_nccl_env overrides it: remove it",
    )
    if not broken:
        expect(
            allowed is None or len(allowed) == len(verdict["unordered"]),
            "P2P works on every GPU pair (the rig probe) and nccl.conf lets NCCL use it",
            expected="NCCL_P2P_LEVEL=SYS (or an NVLink/PCIe level covering every pair)",
            found=f"{p2p_key}={conf[p2p_key]}" if p2p_key else "no P2P setting",
            fix="run `rigctl provision host HOST`",
        )
    source = sum(1 for c in conf if c in nccl.P2P_KEYS and "inventory" in (why.get(c) or ""))
    expect(
        source or "rig probe" in (why.get(p2p_key) or ""),
        "the comment above nccl.conf's P2P setting names the rig probe as the evidence",
        expected="# ... Evidence: the rig probe's copies between every GPU pair ...",
        found=why.get(p2p_key) if p2p_key else "no P2P setting",
        fix="run `rigctl provision host HOST` (the probe ran after the file was written)",
    )


def test_nccl_conf_every_line_says_why(host, want):
    f = host.file(nccl.CONF_PATH)
    if not f.exists:
        pytest.fail("no /etc/nccl.conf")
    missing = nccl.undocumented_lines(f.content_string)
    expect(
        not missing,
        "every setting in /etc/nccl.conf has a comment above it saying why",
        expected="a # line above each KEY=VALUE",
        found=missing,
        fix="do not edit /etc/nccl.conf by hand: set rig_nccl_env in the inventory",
    )
