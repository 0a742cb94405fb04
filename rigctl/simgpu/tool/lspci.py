"""``rigctl-simgpu lspci``: ``lspci -vv -D -nn`` blocks of the simulated GPUs and of the
bridges above them (root ports with their ACS control, switch ports)."""

from .pcitree import all_bridges
from .profile import PCI_NAMES, SUBSYSTEM_VENDORS, lspci_size, lspci_speed, sysfs_bdf


def _bar1_lines(gpu):
    """Resizable BAR capability: BAR 1 current size and what the card supports."""
    bar1 = int(gpu["bar1_mib"])
    top = 32768
    while top < int(gpu["vram_mib"]):
        top *= 2
    supported = []
    size = 64
    while size <= top:
        supported.append("%dMB" % size if size < 1024 else "%dGB" % (size // 1024))
        size *= 2
    bar1_text = "%dMB" % bar1 if bar1 < 1024 else "%dGB" % (bar1 // 1024)
    return [
        "\tCapabilities: [bb0 v1] Physical Resizable BAR",
        "\t\tBAR 0: current size: 16MB, supported: 16MB",
        "\t\tBAR 1: current size: %s, supported: %s" % (bar1_text, " ".join(supported)),
        "\t\tBAR 3: current size: 32MB, supported: 32MB",
    ]


def _express_lines(gpu):
    """The PCI Express capability: LnkCap is what the card supports, LnkSta what it trained at."""
    cap_speed, cap_width = lspci_speed(gpu["device_gen_max"]), gpu["device_width_max"]
    sta_speed, sta_width = lspci_speed(gpu["link_gen_current"]), gpu["link_width_current"]
    speed_mark = " (downgraded)" if gpu["link_gen_current"] < gpu["device_gen_max"] else " (ok)"
    width_mark = " (downgraded)" if sta_width < cap_width else " (ok)"
    return [
        "\tCapabilities: [78] Express (v2) Legacy Endpoint, MSI 00",
        "\t\tDevCap:\tMaxPayload 256 bytes, PhantFunc 0, Latency L0s unlimited, L1 <64us",
        "\t\t\tExtTag+ AttnBtn- AttnInd- PwrInd- RBE+ FLReset+",
        "\t\tDevCtl:\tCorrErr- NonFatalErr- FatalErr- UnsupReq-",
        "\t\t\tRlxdOrd+ ExtTag+ PhantFunc- AuxPwr- NoSnoop+ FLReset-",
        "\t\t\tMaxPayload 256 bytes, MaxReadReq 512 bytes",
        "\t\tDevSta:\tCorrErr- NonFatalErr- FatalErr- UnsupReq- AuxPwr- TransPend-",
        "\t\tLnkCap:\tPort #0, Speed %sGT/s, Width x%d, ASPM L0s L1, Exit Latency L0s <512ns, "
        "L1 <4us" % (cap_speed, cap_width),
        "\t\t\tClockPM+ Surprise- LLActRep- BwNot- ASPMOptComp+",
        "\t\tLnkCtl:\tASPM Disabled; RCB 64 bytes, Disabled- CommClk+",
        "\t\t\tExtSynch- ClockPM- AutWidDis- BWInt- AutBWInt-",
        "\t\tLnkSta:\tSpeed %sGT/s%s, Width x%d%s" % (sta_speed, speed_mark, sta_width, width_mark),
        "\t\t\tTrErr- Train- SlotClk+ DLActive- BWMgmt- ABWMgmt-",
        "\t\tLnkCap2: Supported Link Speeds: 2.5-%sGT/s, Crosslink- Retimer+ 2Retimers+ DRS-"
        % cap_speed,
        "\t\tLnkCtl2: Target Link Speed: %sGT/s, EnterCompliance- SpeedDis-" % cap_speed,
    ]


def gpu_block(gpu):
    i = gpu["index"]
    dev = gpu["pci_device_id"][2:].lower()
    sub = gpu["subsystem_id"][2:].lower()
    sub_dev, sub_ven = sub[:4], sub[4:]
    marketing = PCI_NAMES.get(dev)
    device_name = "%s [%s]" % (gpu["chip"], marketing) if marketing else "Device %s" % dev
    vendor_name = SUBSYSTEM_VENDORS.get(sub_ven, "Device %s" % sub_ven)
    bar1 = int(gpu["bar1_mib"])
    base = 0x30000000000 + i * 0x1000000000
    lines = [
        "%s VGA compatible controller [0300]: NVIDIA Corporation %s [10de:%s] (rev a1) "
        "(prog-if 00 [VGA controller])" % (sysfs_bdf(gpu["bus_id"]), device_name, dev),
        "\tSubsystem: %s Device %s [%s:%s]" % (vendor_name, sub_dev, sub_ven, sub_dev),
        "\tControl: I/O+ Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- "
        "SERR- FastB2B- DisINTx+",
        "\tStatus: Cap+ 66MHz- UDF- FastB2B- ParErr- DEVSEL=fast >TAbort- <TAbort- <MAbort- "
        ">SERR- <PERR- INTx-",
        "\tLatency: 0",
        "\tInterrupt: pin A routed to IRQ %d" % (120 + i),
        "\tNUMA node: %d" % gpu["numa_node"],
        "\tRegion 0: Memory at %x (32-bit, non-prefetchable) [size=16M]"
        % (0xF0000000 - i * 0x2000000),
        "\tRegion 1: Memory at %x (64-bit, prefetchable) [size=%s]" % (base, lspci_size(bar1)),
        "\tRegion 3: Memory at %x (64-bit, prefetchable) [size=32M]" % (base + bar1 * 2**20),
        "\tRegion 5: I/O ports at %x [size=128]" % (0xF000 - i * 0x1000),
        "\tExpansion ROM at %x [virtual] [disabled] [size=512K]" % (0xF1000000 - i * 0x2000000),
        "\tCapabilities: [60] Power Management version 3",
        "\t\tFlags: PMEClk- DSI- D1- D2- AuxCurrent=0mA PME(D0+,D1-,D2-,D3hot+,D3cold-)",
        "\t\tStatus: D0 NoSoftRst+ PME-Enable- DSel=0 DScale=0 PME-",
        "\tCapabilities: [68] MSI: Enable+ Count=1/1 Maskable- 64bit+",
        "\t\tAddress: 00000000fee00000  Data: 0000",
    ]
    lines += _express_lines(gpu) + _bar1_lines(gpu)
    lines += ["\tKernel driver in use: nvidia", "\tKernel modules: nvidia"]
    return "\n".join(lines) + "\n"


_PORT_TYPES = {
    "root_port": "[58] Express (v2) Root Port (Slot+), MSI 00",
    "switch_upstream": "[68] Express (v2) Upstream Port, MSI 00",
    "switch_downstream": "[68] Express (v2) Downstream Port (Slot+), MSI 00",
}


def bridge_block(bridge):
    """`lspci -vv` block of a bridge: its bus range and, on ports facing a GPU, ACS control
    (redirect on when the profile says `acs_redirect`)."""
    redirect = "+" if bridge["acs_redirect"] else "-"
    lines = [
        "%s PCI bridge [0604]: %s [%s:%s] (prog-if 00 [Normal decode])"
        % (bridge["bdf"], bridge["name"], bridge["vendor"], bridge["device"]),
        "\tControl: I/O+ Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- "
        "SERR- FastB2B- DisINTx+",
        "\tLatency: 0, Cache Line Size: 64 bytes",
        "\tBus: primary=%02x, secondary=%02x, subordinate=%02x, sec-latency=0"
        % (bridge["primary"], bridge["secondary"], bridge["subordinate"]),
        "\tCapabilities: " + _PORT_TYPES[bridge["role"]],
        "\t\tLnkCap:\tPort #0, Speed %sGT/s, Width x%d, ASPM L1, Exit Latency L1 <64us"
        % (lspci_speed(bridge["gen_max"]), bridge["width_max"]),
        "\t\tLnkSta:\tSpeed %sGT/s, Width x%d"
        % (lspci_speed(bridge["gen_current"]), bridge["width_current"]),
    ]
    if bridge["role"] != "switch_upstream":
        lines += [
            "\tCapabilities: [2a0 v1] Access Control Services",
            "\t\tACSCap:\tSrcValid+ TransBlk+ ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- "
            "DirectTrans+",
            "\t\tACSCtl:\tSrcValid+ TransBlk- ReqRedir%s CmpltRedir%s UpstreamFwd%s EgressCtrl- "
            "DirectTrans-" % (redirect, redirect, redirect),
        ]
    lines.append("\tKernel driver in use: pcieport")
    return "\n".join(lines) + "\n"


def cmd_lspci(profile):
    blocks = [(sysfs_bdf(gpu["bus_id"]), gpu_block(gpu)) for gpu in profile["gpus"]]
    blocks += [(bridge["bdf"], bridge_block(bridge)) for bridge in all_bridges(profile)]
    return "\n".join(text for _, text in sorted(blocks))
