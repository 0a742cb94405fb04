"""The NVIDIA driver, one test per fact a rig owner cares about: version, flavor, which
module file each target kernel resolves, provenance of a patched build, holds, nouveau.

Rigs whose inventory leaves rig_driver_version null are not managed: these checks skip."""

from __future__ import annotations

import json

import pytest

from rigctl.core import driver
from rigctl.verify.checks import expect, skip_unless_real_gpu


@pytest.fixture
def want(rig_vars) -> dict:
    if rig_vars.get("rig_driver_version") is None:
        pytest.skip("rig_driver_version is null: the driver is not managed on this rig")
    return rig_vars


@pytest.fixture
def provenance(host) -> dict | None:
    f = host.file(driver.PROVENANCE_PATH)
    if not f.exists:
        return None
    try:
        return json.loads(f.content_string)
    except ValueError:
        return None


@pytest.fixture
def targets(rig_facts) -> list[str]:
    """The kernels the driver must cover, as the rig itself determined them (rig_facts:
    driver.target_kernels evaluated on the rig, never on this machine)."""
    return rig_facts["kernel"]["targets"]


@pytest.fixture
def resolved(rig_facts, targets) -> dict:
    """Per target kernel: which module `modprobe nvidia` loads (``module``, Debian's
    redirect followed) and its modinfo fields, as rig_facts read them
    (hostfacts.resolve_module); ``filename`` None where nothing resolves."""
    modules = rig_facts["driver"]["modules"]
    blank = dict.fromkeys(("module", "filename", "version", "license", "flavor", "location"))
    return {k: dict(blank, **(modules.get(k) or {})) for k in targets}


def test_driver_target_kernels_have_headers(rig_facts, want):
    targets = rig_facts["kernel"]["targets"]
    missing = rig_facts["kernel"]["targets_without_headers"]
    expect(
        bool(targets) and not missing,
        "every target kernel has headers (DKMS rebuilds the module for it)",
        expected="at least one kernel, all with headers",
        found={"targets": targets, "without headers": missing},
        fix="install linux-headers-<kernel> for each kernel listed, then `rigctl provision`",
    )


def test_driver_userspace_version(rig_facts, want):
    found = rig_facts["driver"]["userspace_versions"]
    expect(
        found == [want["rig_driver_version"]],
        "the NVIDIA userspace is exactly the version asked for",
        expected=want["rig_driver_version"],
        found=found or "none installed",
        fix="run `rigctl provision host HOST`",
    )


def test_driver_module_resolves_for_every_target_kernel(resolved, want):
    bad = {k: v["filename"] for k, v in resolved.items()
           if not v["filename"] or v["version"] != want["rig_driver_version"]}
    expect(
        not bad and bool(resolved),
        "every target kernel resolves an NVIDIA module of the version asked for",
        expected=want["rig_driver_version"],
        found={k: (v["filename"], v["version"]) for k, v in resolved.items()} or "no target kernel",
        fix="run `rigctl provision host HOST`; `modinfo -k KERNEL nvidia` shows what resolves",
    )


def test_driver_module_is_the_open_module(resolved, want):
    expect(
        all(v["flavor"] == "open" for v in resolved.values()),
        "the module is NVIDIA's open kernel module (license Dual MIT/GPL)",
        expected="Dual MIT/GPL",
        found={k: v["license"] for k, v in resolved.items()},
        fix="remove the proprietary nvidia-kernel-dkms package and provision again",
    )


def test_driver_module_flavor(resolved, provenance, want):
    flavor = want["rig_driver_flavor"]
    if flavor == "p2p":
        ok = all(v["module"] == "nvidia" and v["location"] == "dkms"
                 and "/updates/dkms/nvidia.ko" in (v["filename"] or "")
                 for v in resolved.values())
        expected = "the patched module nvidia.ko from DKMS (nvidia-p2p), no stock module shadowing it"
    else:
        ok = all(v["location"] == "dkms" for v in resolved.values())
        expected = "the stock open module built by DKMS"
    expect(
        ok and (provenance or {}).get("flavor") == flavor,
        f"the rig runs the {flavor} flavor",
        expected=expected,
        found={"resolved": {k: v["filename"] for k, v in resolved.items()},
               "recorded flavor": (provenance or {}).get("flavor")},
        fix="run `rigctl provision host HOST`; a stock module in updates/dkms shadows a "
        "patched one (remove the stock kernel module package)",
    )


def test_driver_p2p_module_is_the_pinned_commits_build(host, resolved, want):
    """The module each target kernel loads is the one DKMS built from the pinned commit:
    its srcversion equals the DKMS build's (the comparison nvidia_dkms makes at install),
    not merely some nvidia.ko under updates/dkms."""
    if want["rig_driver_flavor"] != "p2p":
        pytest.skip("flavor open: no patched build to compare")
    src = driver.resolve_p2p_source(want["rig_p2p_source"])
    version = driver.p2p_dkms_version(want["rig_driver_version"], src["commit"])
    arch = host.run("uname -m").stdout.strip()
    found, bad = {}, []
    for kernel, info in resolved.items():
        built_dir = f"/var/lib/dkms/{driver.P2P_DKMS_NAME}/{version}/{kernel}/{arch}/module"
        # modinfo lives in /usr/sbin, which a login user's PATH lacks on Debian
        res = host.run(f"PATH=$PATH:/usr/sbin:/sbin modinfo -F srcversion {built_dir}/nvidia.ko*")
        built = res.stdout.strip().splitlines()[0] if res.rc == 0 and res.stdout.strip() else None
        loaded = info.get("srcversion")
        found[kernel] = {"resolves": info.get("filename"), "srcversion": loaded,
                         "pinned build": built or f"no build in {built_dir}"}
        if not built or loaded != built:
            bad.append(kernel)
    expect(
        bool(resolved) and not bad,
        f"every target kernel loads the patched module built from commit {src['commit'][:12]} "
        "(srcversion equal to DKMS's build of it)",
        expected={"dkms": f"{driver.P2P_DKMS_NAME}/{version}", "commit": src["commit"]},
        found={k: found[k] for k in (bad or found)},
        fix="run `rigctl provision host HOST`: another nvidia.ko (a stock module, or a build of "
        "another commit) is what the kernel loads",
    )


def test_driver_dkms_knows_the_module(rig_facts, provenance, targets, want):
    entries = rig_facts["driver"]["dkms"] or []
    name = (provenance or {}).get("dkms_name")
    version = (provenance or {}).get("dkms_version")
    missing = [k for k in targets
               if not any(e["module"] == name and e["version"] == version and e["kernel"] == k
                          and e["state"] == "installed" for e in entries)]
    expect(
        bool(name) and not missing,
        "DKMS has the module installed for every target kernel (kernel upgrades rebuild it)",
        expected=f"{name}/{version} installed for {targets}",
        found=entries,
        fix="run `rigctl provision host HOST`",
    )


def test_driver_p2p_provenance_recorded(provenance, want):
    if want["rig_driver_flavor"] != "p2p":
        pytest.skip("flavor open: no patched build to trace")
    src = driver.resolve_p2p_source(want["rig_p2p_source"])
    p = provenance or {}
    expect(
        p.get("commit") == src["commit"] and p.get("branch") == src["branch"]
        and p.get("fork") == src["url"] and bool(p.get("build_time")),
        "the patched module's provenance is recorded (fork, branch, commit, build time)",
        expected={k: src[k] for k in ("url", "branch", "commit")},
        found=p or f"no {driver.PROVENANCE_PATH}",
        fix="run `rigctl provision host HOST`",
    )


def test_driver_runfile_userspace_recorded(rig_facts, provenance, want):
    if want.get("rig_driver_source") != "runfile":
        pytest.skip("the userspace comes from packages, not NVIDIA's installer")
    rec = (provenance or {}).get("runfile") or {}
    expect(
        rec.get("version") == want["rig_driver_version"]
        and (rec.get("sha256") or "") == (want.get("rig_driver_runfile_sha256") or "").lower(),
        "the userspace is NVIDIA's installer of the version and checksum asked for",
        expected={"version": want["rig_driver_version"],
                  "sha256": want.get("rig_driver_runfile_sha256")},
        found=rec or f"no installer record in {driver.PROVENANCE_PATH}",
        fix="run `rigctl provision host HOST`",
    )


def test_driver_packages_held(rig_facts, provenance, want):
    if want.get("rig_driver_source") == "runfile":
        pytest.skip("rig_driver_source is runfile: NVIDIA's installer brought the userspace, "
                    "no package to hold (test_driver_runfile_userspace_recorded)")
    packages = {p["name"]: p for p in rig_facts["driver"]["packages"] or []}
    names = (provenance or {}).get("packages") or []
    bad = [n for n in names if n not in packages or not packages[n]["held"]
           or not driver.deb_version_matches(packages[n]["version"], want["rig_driver_version"])]
    expect(
        bool(names) and not bad,
        "the driver packages are installed at the version asked for and held",
        expected=f"{names or 'the driver packages'} held at {want['rig_driver_version']}",
        found={n: packages.get(n) for n in (bad or names)},
        fix="run `rigctl provision host HOST` (it holds them); `apt-mark showhold` lists holds",
    )


def test_nouveau_blacklisted(rig_facts, want):
    expect(
        rig_facts["driver"]["nouveau_blacklisted"] and not rig_facts["driver"]["nouveau_loaded"],
        "nouveau is blacklisted and not loaded",
        expected="blacklisted, not loaded",
        found={k: rig_facts["driver"][k] for k in ("nouveau_blacklisted", "nouveau_loaded")},
        fix="run `rigctl provision host HOST`, then reboot",
    )


def test_driver_loaded_is_the_installed_one(rig_facts, want):
    skip_unless_real_gpu(rig_facts, "the loaded kernel module")
    found = rig_facts["driver"]["loaded_version_sysfs"]
    expect(
        found == want["rig_driver_version"],
        "the loaded NVIDIA module is the version installed",
        expected=want["rig_driver_version"],
        found=found or "no nvidia module loaded",
        fix="reboot the rig (or set rig_reboot_policy: auto); under Secure Boot enroll the key",
    )
