"""Hardware checks that decide whether PCIe P2P can work on a rig.

Pure functions over :func:`rigctl.core.gpufacts.gather` output plus the IOMMU facts of
:func:`rigctl.core.hostfacts.iommu`. Standard library only, Python 3.9 syntax (shipped to
hosts inside the ``hw_checks`` module; the verification suites call the same functions).

Each check returns ``{"name", "title", "status", "summary", "problems", "fix"}``: status
``pass``, ``fail`` or ``unknown`` (the facts to decide are missing: reported, never a stop);
``problems`` holds one line per problem naming the GPU (index and bus id) or bridge, what
was found, what is needed and what to do.

One reader lives here too: :func:`read_display` (which GPUs drive a display, from
nvidia-smi and the kernel's DRM connectors), for the display check.
"""

from __future__ import annotations

import glob
import os
import re

from . import gpudb, hostfacts, smiquery

PASS = "pass"
FAIL = "fail"
UNKNOWN = "unknown"

ENFORCE = "enforce"
WARN = "warn"

CHECKS = ("rebar", "iommu", "acs", "pcie_links", "chipset", "generations", "display")

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


def _card(gpu):
    return "%s %s" % (_gpu(gpu), (gpu.get("name") or "").replace("NVIDIA ", "").strip())


# Same-generation pairs that still fail with the patched module (aikitoria #38).
_FAILING_PAIRS = (("RTX 4090", "RTX 6000 Ada"),)


def check_generations(gpus, flavor):
    title = "One GPU generation"
    kinds = {}
    for gpu in gpus:
        kinds.setdefault(gpu.get("generation") or "unknown", []).append(_card(gpu))
    fix = ("use GPUs of one generation in a P2P rig (models of one generation mix, e.g. "
           "RTX 5090 with RTX PRO 6000 Blackwell), or set `rig_driver_flavor: open`")
    problems = []
    if len(kinds) > 1 and flavor == "p2p":
        problems.append(
            "mixed GPU generations in a P2P rig (%s): P2P between generations needs, besides "
            "the patched module, a byte patch of the installed libcuda (NVIDIA's binary "
            "userspace library), which rigctl never applies; %s"
            % ("; ".join("%s: %s" % (k, ", ".join(v)) for k, v in sorted(kinds.items())), fix)
        )
    names = [(g, g.get("name") or "") for g in gpus]
    for a, b in _FAILING_PAIRS:
        left = [g for g, n in names if a in n]
        right = [g for g, n in names if b in n]
        if left and right and flavor == "p2p":
            problems.append(
                "%s with %s in a P2P rig (%s; %s): P2P between these fails even with the "
                "patched module; %s" % (a, b, ", ".join(_card(g) for g in left),
                                        ", ".join(_card(g) for g in right), fix))
    ok = "one generation (%s)" % ", ".join(sorted(kinds)) if len(kinds) <= 1 else (
        "mixed generations (%s), fine without P2P" % ", ".join(sorted(kinds))
    )
    return _result("generations", title, problems, ok, fix)


def evaluate(gpu_facts, iommu, cpu_vendor, flavor="open", policy=None, iommu_policy="check",
             p2p_base=None, display=None):
    """Every check, with the policy that applies. ``failed`` lists the failed checks;
    ``stop`` is true when the policy is enforce and one failed. ``p2p_base``: the NVIDIA
    base of the P2P branch (rig_driver_version); ``display``: :func:`read_display`."""
    gpus = gpu_facts.get("gpus") or []
    results = [
        check_rebar(gpus),
        check_iommu(iommu, cpu_vendor, iommu_policy),
        check_acs(gpu_facts.get("bridges"), gpus),
        check_pcie_links(gpus),
        check_chipset(gpus),
        check_generations(gpus, flavor),
        check_display(gpus, display, flavor, p2p_base),
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


# --- display-attached GPUs -------------------------------------------------------------

DISPLAY_FIXED_BASE = (610,)


def _is_5090(gpu):
    return "5090" in (gpu.get("name") or "")


def check_display(gpus, display, flavor, p2p_base=None):
    """A GPU driving a display loses the static BAR1 mapping on RTX 5090s with P2P
    branches before 610.x, and P2P with it. ``display``: {bus id: {"active": bool or None,
    "connectors": [connected DRM connectors]}} (:func:`read_display`)."""
    title = "No display on P2P GPUs"
    fix = ("run the rig headless (the display on the CPU's integrated graphics or another "
           "card), or use a P2P branch cut from NVIDIA 610.x or newer (aikitoria's 610.43.02 "
           "on; pin it with `rigctl p2p pin URL BRANCH`)")
    display = display or {}
    seen_gpus = display.get("gpus") or {}
    attached = []
    for gpu in gpus:
        seen = seen_gpus.get(gpu["bus_id"]) or {}
        why = []
        if seen.get("active"):
            why.append("nvidia-smi: Display Active")
        if seen.get("connectors"):
            why.append("connected: " + ", ".join(seen["connectors"]))
        if why:
            attached.append((gpu, "; ".join(why)))
    names = ", ".join("%s %s (%s)" % (_gpu(g), g.get("name", ""), w) for g, w in attached)
    problems = []
    affected = (flavor == "p2p" and any(_is_5090(g) for g in gpus) and p2p_base
                and _vt(p2p_base) < DISPLAY_FIXED_BASE)
    if affected:
        problems = ["%s %s drives a display (%s): on RTX 5090s the P2P branches before 610.x "
                    "(this one is cut from NVIDIA %s) lose P2P on a display-attached GPU; %s"
                    % (_gpu(g), g.get("name", ""), w, p2p_base, fix)
                    for g, w in attached if _is_5090(g)]
    unknown = None
    if not display.get("read") and gpus:
        unknown = "display state unreadable (no driver answer, no DRM connectors)"
    if attached and not problems:
        ok = "display on %s (no effect on P2P with this rig's GPUs and branch)" % names
    else:
        ok = "no GPU drives a display"
    return _result("display", title, problems, ok, fix, None if attached else unknown)


DISPLAY_FIELDS = ("pci.bus_id", "display_active")


def parse_display_csv(text, fields=DISPLAY_FIELDS):
    """{bus id: bool} from ``nvidia-smi --query-gpu=pci.bus_id,display_active
    --format=csv,noheader`` (``fields`` None: CSV with its header line, any fields that
    include those two). ``Enabled`` is true, ``Disabled`` false, anything else None."""
    out = {}
    for row in smiquery.parse_query_gpu_csv(text, fields=list(fields) if fields else None):
        try:
            bus = gpudb.normalize_bus_id(str(row.get("pci.bus_id") or ""))
        except ValueError:
            continue
        value = str(row.get("display_active") or "").strip().lower()
        out[bus] = {"enabled": True, "disabled": False}.get(value)
    return out


def drm_connectors(sys_root, bus_id):
    """Connected DRM connectors of a GPU: ``<sysfs>/bus/pci/devices/<bdf>/drm/card*/
    card*-<connector>/status`` saying ``connected`` (the kernel's own view, also without
    nvidia-smi). None when the GPU has no ``drm`` directory (no DRM driver bound)."""


    found = None
    for dev in glob.glob(os.path.join(sys_root, "bus/pci/devices/*")):
        try:
            if gpudb.normalize_bus_id(os.path.basename(dev)) != bus_id:
                continue
        except ValueError:
            continue
        if not os.path.isdir(os.path.join(dev, "drm")):
            continue
        found = found or []
        for status in sorted(glob.glob(os.path.join(dev, "drm", "card*", "card*-*", "status"))):
            try:
                with open(status) as fh:
                    state = fh.read().strip()
            except OSError:
                continue
            if state == "connected":
                found.append(os.path.basename(os.path.dirname(status)).split("-", 1)[1])
    return found


def read_display(gpu_layer, gpus, driver_answers):
    """``{"read", "gpus": {bus id: {"active", "connectors"}}}`` of this host's GPUs:
    nvidia-smi's ``display_active`` where a driver answers, and the DRM connectors in
    sysfs (the simulated sysfs tree on a lab rig). ``read`` is false when neither could be
    read."""

    active, read = {}, False
    if driver_answers:
        rc, out, _ = hostfacts.run([gpu_layer["nvidia_smi"],
                                    "--query-gpu=" + ",".join(DISPLAY_FIELDS),
                                    "--format=csv,noheader"])
        if rc == 0:
            try:
                active = parse_display_csv(out)
            except ValueError:
                active = {}
            read = bool(active)
    out = {}
    for gpu in gpus:
        connectors = drm_connectors(gpu_layer["sys_root"], gpu["bus_id"])
        if connectors is not None:
            read = True
        if gpu["bus_id"] in active or connectors:
            out[gpu["bus_id"]] = {"active": active.get(gpu["bus_id"]),
                                  "connectors": connectors or []}
    return {"read": read, "gpus": out}


def _vt(version):
    return tuple(int(p) for p in re.findall(r"\d+", str(version or "")))


def iommu_cmdline(policy, cpu_vendor):
    """Kernel command line options for ``rig_iommu_policy`` (None for ``check``)."""
    vendor_flag = {"AMD": "amd_iommu", "Intel": "intel_iommu"}.get(cpu_vendor)
    if policy == "passthrough":
        return ("iommu=pt %s=on" % vendor_flag) if vendor_flag else "iommu=pt"
    if policy == "off":
        return ("%s=off" % vendor_flag) if vendor_flag else "iommu=off"
    return None
