"""Hardware checks that decide whether PCIe P2P can work on a rig.

Pure functions over :func:`rigctl.core.gpufacts.gather` output plus the IOMMU facts of
:func:`rigctl.core.hostfacts.iommu`. Standard library only, Python 3.9 syntax (shipped to
hosts inside the ``hw_checks`` module; the verification suites call the same functions).

Each check returns ``{"name", "title", "status", "summary", "problems", "fix"}``: status
``pass``, ``fail`` or ``unknown`` (the facts to decide are missing: reported, never a stop);
``problems`` holds one line per problem naming the GPU (index and bus id) or bridge, what
was found, what is needed and what to do.
"""

from __future__ import annotations

PASS = "pass"
FAIL = "fail"
UNKNOWN = "unknown"

ENFORCE = "enforce"
WARN = "warn"

CHECKS = ("rebar", "iommu", "acs", "pcie_links", "chipset", "generations")

_IOMMU_FLAG = {"AMD": "amd_iommu=on", "Intel": "intel_iommu=on"}


def effective_policy(policy, flavor):
    """``rig_hw_check_policy`` as applied: null means enforce on ``p2p`` rigs, else warn."""
    if policy in (ENFORCE, WARN):
        return policy
    return ENFORCE if flavor == "p2p" else WARN


def _result(name, title, problems, ok_summary, fix, unknown=None):
    if problems:
        status = FAIL
        summary = "%s: %d problem(s): %s" % (title, len(problems), problems[0])
    elif unknown:
        status = UNKNOWN
        summary = "%s: not decided: %s" % (title, unknown)
    else:
        status = PASS
        summary = "%s: %s" % (title, ok_summary)
    return {
        "name": name,
        "title": title,
        "status": status,
        "summary": summary,
        "problems": problems,
        "fix": fix if (problems or unknown) else None,
    }


def _gpu(gpu):
    return "GPU %d (%s)" % (gpu["index"], gpu["bus_id"])


def check_rebar(gpus):
    title = "Resizable BAR"
    fix = (
        "in the BIOS enable Above 4G Decoding and Resizable BAR (Re-Size BAR Support), "
        "then reboot; some early RTX 3090s need a vBIOS update first, and 48 GB RTX 4090s "
        "cannot get a large enough BAR1"
    )
    problems, missing = [], []
    for gpu in gpus:
        bar1, vram = gpu.get("bar1_mib"), gpu.get("vram_mib")
        if bar1 is None or vram is None:
            missing.append(_gpu(gpu))
            continue
        if bar1 < vram:
            problems.append(
                "%s: BAR1 is %d MiB, smaller than its %d MiB VRAM; P2P through BAR1 needs "
                "BAR1 >= VRAM: %s" % (_gpu(gpu), bar1, vram, fix)
            )
    unknown = None
    if missing:
        unknown = "BAR1 size unreadable for %s (needs the driver, or lspci -vv as root: " \
            "install pciutils)" % ", ".join(missing)
    if not gpus:
        unknown = "no NVIDIA GPU found"
    return _result("rebar", title, problems, "BAR1 covers VRAM on all %d GPU(s)" % len(gpus), fix, unknown)


def check_iommu(iommu, cpu_vendor, policy="check"):
    title = "IOMMU mode"
    mode = (iommu or {}).get("mode")
    flag = _IOMMU_FLAG.get(cpu_vendor, "amd_iommu=on or intel_iommu=on")
    fix = (
        "set `rig_iommu_policy: passthrough` (rigctl writes `iommu=pt %s` to a GRUB drop-in) "
        "and reboot, or disable the IOMMU in the BIOS" % flag
    )
    if policy in ("passthrough", "off"):
        fix = "reboot: the GRUB drop-in for `rig_iommu_policy: %s` takes effect at the next boot" % policy
    problems = []
    if mode == "translated":
        problems.append(
            "IOMMU is translating DMA (%s): P2P needs it off or in passthrough, or peer copies "
            "come back zeroed/NaN (IO_PAGE_FAULT in dmesg): %s"
            % (", ".join("%s x%d" % kv for kv in sorted((iommu.get("group_types") or {}).items())), fix)
        )
    unknown = None
    if mode not in ("off", "passthrough", "translated"):
        unknown = "IOMMU mode %r (groups of unknown type)" % mode
    return _result("iommu", title, problems, "IOMMU %s" % mode, fix, unknown)


def _below(bridge, gpu_bus_id):
    """Whether a GPU's bus id sits below a bridge (its secondary..subordinate range)."""
    bus = bridge.get("bus") or {}
    domain_b = bridge["bdf"].split(":")[0][-4:].lower() if bridge["bdf"].count(":") == 2 else "0000"
    domain_g, bus_g = gpu_bus_id.split(":")[0], int(gpu_bus_id.split(":")[1], 16)
    return domain_b == domain_g and bus.get("secondary", 1) <= bus_g <= bus.get("subordinate", -1)


def check_acs(bridges, gpus):
    title = "ACS redirect"
    fix = (
        "disable ACS in the BIOS (AMD: CBS > NBIO > ACS Enable = Disabled; Intel: VT-d/ACS "
        "options), or clear it at boot with `setpci -s <bridge> ECAP_ACS+0x6.w=0000`"
    )
    if bridges is None:
        return _result(
            "acs", title, [], "", fix, unknown="lspci -vv not readable (install pciutils; runs as root)"
        )
    problems = []
    for bridge in bridges:
        ctl = bridge.get("acs_ctl") or {}
        redirect = [flag for flag in ("ReqRedir", "CmpltRedir") if ctl.get(flag)]
        if not redirect:
            continue
        below = [_gpu(g) for g in gpus if _below(bridge, g["bus_id"])]
        if not below:
            continue
        problems.append(
            "bridge %s above %s has ACS %s enabled: peer traffic is redirected through the "
            "root complex (slow or hangs); %s"
            % (bridge["bdf"], ", ".join(below), "+".join(r + "+" for r in redirect), fix)
        )
    return _result("acs", title, problems, "no ACS redirect on bridges above the GPUs", fix)


def check_pcie_links(gpus):
    title = "PCIe links"
    fix = (
        "reseat the card or replace the riser, move it to a full x16 CPU slot, check the "
        "BIOS slot settings (bifurcation, PCIe generation) and compare under load"
    )
    problems = []
    unknown = []
    for gpu in gpus:
        link = gpu.get("link") or {}
        width, dev_width = link.get("width_current"), link.get("device_width_max") or link.get("width_max")
        gen_cur = link.get("gen_current")
        gen_link = link.get("gen_max")
        dev_gen = link.get("device_gen_max") or gen_link
        if width is None or dev_width is None or dev_gen is None:
            unknown.append(_gpu(gpu))
            continue
        found = []
        if width < dev_width:
            found.append("x%d where the card does x%d" % (width, dev_width))
        if gen_link is not None and gen_link < dev_gen:
            found.append("the slot allows Gen%d where the card does Gen%d" % (gen_link, dev_gen))
        elif gen_cur is not None and 1 < gen_cur < dev_gen:
            # Gen1 is what an idle link drops to: only a trained-down link above it counts.
            found.append("trained at Gen%d where Gen%d is possible" % (gen_cur, dev_gen))
        if found:
            problems.append(
                "%s %s: link %s; %s" % (_gpu(gpu), gpu.get("name", ""), " and ".join(found), fix)
            )
    return _result(
        "pcie_links", title, problems, "every GPU at its full link width and generation", fix,
        unknown="link state unreadable for %s" % ", ".join(unknown) if unknown else None,
    )


def check_chipset(gpus):
    title = "GPUs on CPU lanes"
    fix = (
        "move the card to a slot wired to the CPU (the board manual's block diagram says "
        "which); chipset-attached GPUs cannot do P2P (CNS) and share the chipset uplink"
    )
    problems = [
        "%s %s: attached through the chipset (topo -p2p: CNS); %s" % (_gpu(g), g.get("name", ""), fix)
        for g in gpus
        if g.get("behind_chipset")
    ]
    unknown = None
    if len(gpus) > 1 and all(g.get("behind_chipset") is None for g in gpus):
        unknown = "needs the driver (nvidia-smi topo -p2p r)"
    return _result("chipset", title, problems, "no GPU behind the chipset", fix, unknown)


def check_generations(gpus, flavor):
    title = "One GPU generation"
    kinds = {}
    for gpu in gpus:
        kinds.setdefault(gpu.get("generation") or "unknown", []).append(_gpu(gpu))
    fix = "use GPUs of one generation in a P2P rig, or set `rig_driver_flavor: open`"
    problems = []
    if len(kinds) > 1 and flavor == "p2p":
        problems.append(
            "mixed GPU generations in a P2P rig (%s): the patched P2P module branches do not "
            "support P2P between generations; %s"
            % ("; ".join("%s: %s" % (k, ", ".join(v)) for k, v in sorted(kinds.items())), fix)
        )
    ok = "one generation (%s)" % ", ".join(sorted(kinds)) if len(kinds) <= 1 else (
        "mixed generations (%s), fine without P2P" % ", ".join(sorted(kinds))
    )
    return _result("generations", title, problems, ok, fix)


def evaluate(gpu_facts, iommu, cpu_vendor, flavor="open", policy=None, iommu_policy="check"):
    """Every check, with the policy that applies. ``failed`` lists the failed checks;
    ``stop`` is true when the policy is enforce and one failed."""
    gpus = gpu_facts.get("gpus") or []
    results = [
        check_rebar(gpus),
        check_iommu(iommu, cpu_vendor, iommu_policy),
        check_acs(gpu_facts.get("bridges"), gpus),
        check_pcie_links(gpus),
        check_chipset(gpus),
        check_generations(gpus, flavor),
    ]
    applied = effective_policy(policy, flavor)
    failed = [r for r in results if r["status"] == FAIL]
    return {
        "policy": applied,
        "flavor": flavor,
        "gpu_view": gpu_facts.get("gpu_view"),
        "results": results,
        "failed": [r["name"] for r in failed],
        "problems": [line for r in failed for line in r["problems"]],
        "stop": applied == ENFORCE and bool(failed),
    }


def iommu_cmdline(policy, cpu_vendor):
    """Kernel command line options for ``rig_iommu_policy`` (None for ``check``)."""
    vendor_flag = {"AMD": "amd_iommu", "Intel": "intel_iommu"}.get(cpu_vendor)
    if policy == "passthrough":
        return ("iommu=pt %s=on" % vendor_flag) if vendor_flag else "iommu=pt"
    if policy == "off":
        return ("%s=off" % vendor_flag) if vendor_flag else "iommu=off"
    return None
