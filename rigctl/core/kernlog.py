"""Kernel log parsers: NVIDIA Xid events and PCIe AER error records.

Standard library only, Python 3.9 syntax (shipped to managed hosts as module_utils, like
:mod:`rigctl.core.parsers`). Pure functions: text in, JSON-serializable dicts out.

Input is the kernel log as any of these print it (one line each, mixed formats are fine):

- ``dmesg``:           ``[74889.644138] NVRM: Xid (PCI:0000:02:00): 79, GPU has fallen ...``
- ``dmesg -T``:        ``[Sun Apr 26 23:12:26 2026] NVRM: Xid (PCI:0001:6c:00): 119, pid=...``
- ``dmesg -x``:        ``kern  :err   : [  365.96] NVRM: ...``
- ``journalctl -k``:   ``Sep 19 16:18:02 bubz kernel: [68183.615790] pcieport 0000:00:03.1: ...``
  (also ISO timestamps, ``-o short-monotonic`` and a bare ``kernel:`` prefix)
- no prefix at all (what people paste after removing the timestamps).

:func:`parse_xid` reads ``NVRM: Xid (PCI:dddd:bb:dd): CODE, [pid=..., name=..., ]message``
lines (older drivers print no ``pid=..., name=...`` part; ``pid='<unknown>'`` reads as None)
plus the ``NVRM: GPU at PCI:...: GPU-<uuid>`` / ``GPU Board Serial Number`` lines the driver
prints before the first Xid of a GPU. :data:`XID_CODES` says what a code means, its usual fix
and a severity (``fail``/``warn``/``info``); :func:`xid_info` answers for any code.

:func:`parse_aer` reads the records of the kernel's AER driver (drivers/pci/pcie/aer.c), in
its old (4.x: ``AER: Corrected error received: id=0010``, long bit names such as
``Replay Timer Timeout``) and newer forms (``AER: Correctable error message received from
<bdf>``, short names such as ``RxErr``). Error names are reported with the short names
``lspci -vv`` uses in its ``CESta``/``UESta`` lines (``RxErr``, ``BadTLP``, ``BadDLLP``,
``Rollover``, ``Timeout``, ``AdvNonFatalErr``; ``DLP``, ``SDES`` (Surprise Down),
``TLP`` (Poisoned TLP), ``CmpltTO``, ``MalfTLP``, ``UnsupReq``, ...), decoded from the
unmasked bits of ``error status/mask`` and from the printed ``[bit] Name`` lines, so a
record whose bit lines were cut still names its errors.

:func:`parse_aer_counters` reads the AER statistics the kernel keeps per device in sysfs
(``aer_dev_correctable``, ``aer_dev_nonfatal``, ``aer_dev_fatal``: ``Name count`` lines and a
``TOTAL_ERR_*`` line; long names on older kernels) with the same short names.

Bus ids are normalized like :func:`rigctl.core.gpudb.normalize_bus_id`: ``dddd:bb:dd.f``
lowercase (the Xid form ``PCI:0000:01:00`` without a function reads as ``.0``). A line
that names an Xid or an AER record but does not have the expected shape raises
``ValueError`` with its line number; other lines are ignored.
"""

from __future__ import annotations

import re

from . import gpudb

__all__ = [
    "XID_CODES",
    "AER_CORRECTABLE_BITS",
    "AER_UNCORRECTABLE_BITS",
    "xid_info",
    "split_kernel_prefix",
    "parse_xid",
    "parse_aer",
    "parse_kernel_log",
    "parse_aer_counters",
    "AER_COUNTER_FILES",
]

# --- Xid table --------------------------------------------------------------------------

_RISER = (
    "reseat the card; check riser, power cables and PSU headroom, slot, temperatures"
)
_APP = (
    "usually the application (bad kernel, out-of-bounds access, driver/CUDA mismatch); if it repeats "
    "with different programs, test the GPU memory and the card"
)
_MEMORY = (
    "memory error: check the retired pages / remapped rows (nvidia-smi -q -d "
    "ROW_REMAPPER,PAGE_RETIREMENT), reset the GPU; repeated: RMA"
)
_GSP = (
    "GSP firmware stopped answering: reset the GPU or reboot; update the driver; on GeForce try "
    "NVreg_EnableGpuFirmware=0 (proprietary module only)"
)
_NVLINK = (
    "NVLink error: reseat the NVLink bridge (GeForce/RTX) or check the NVLink/NVSwitch fabric; reset "
    "the GPUs"
)

# code -> (name, meaning, usual fix, severity). Severity is what a rig health check makes of
# one occurrence: "fail" (hardware, link or firmware is suspect, the GPU needs attention),
# "warn" (often software, worth a look when it repeats), "info" (a consequence or a note).
XID_CODES = {
    8: (
        "GPU stopped processing",
        "a channel timed out (GPU hung on work)",
        _APP,
        "warn",
    ),
    13: (
        "Graphics engine exception",
        "the GPU hit an exception running a program",
        _APP,
        "warn",
    ),
    31: (
        "GPU memory page fault",
        "a program accessed unmapped GPU memory (MMU fault)",
        _APP,
        "warn",
    ),
    32: (
        "Invalid or corrupted push buffer stream",
        (
            "the driver read a corrupted command stream (application, driver, or DMA corruption on the PCIe "
            "link)"
        ),
        "check the application and driver; if it repeats, check the PCIe link (AER errors, riser)",
        "warn",
    ),
    38: (
        "Driver firmware error",
        "the driver reported a firmware error",
        "update the driver; reset the GPU",
        "warn",
    ),
    43: (
        "GPU stopped processing",
        "a program hit a fault and its channel was stopped; the GPU keeps working",
        _APP,
        "info",
    ),
    45: (
        "Preemptive cleanup",
        "channels were cleaned up after an earlier error or a killed program (see the Xid before it)",
        "look at the earlier Xid; none needed on its own",
        "info",
    ),
    48: (
        "Double-bit ECC error",
        "an uncorrectable (DBE) memory error",
        _MEMORY,
        "fail",
    ),
    61: (
        "Internal micro-controller breakpoint/warning",
        "GPU firmware (PMU) warning",
        "update the driver and vBIOS; reset the GPU if it repeats",
        "warn",
    ),
    62: (
        "Internal micro-controller halt",
        "GPU firmware (PMU) halted",
        "reset the GPU or reboot; update the driver and vBIOS; overheating or power can cause it",
        "fail",
    ),
    63: (
        "ECC page retirement or row remapping event",
        "a memory page was retired or a row remapped",
        _MEMORY,
        "warn",
    ),
    64: (
        "ECC page retirement or row remapper recording failure",
        "a memory page could not be retired / a row could not be remapped",
        _MEMORY,
        "fail",
    ),
    68: (
        "Video decoder (NVDEC) exception",
        "the video decoder hit an error",
        "usually the application or driver; update the driver",
        "warn",
    ),
    69: (
        "Graphics engine class error",
        "the graphics engine rejected a command",
        _APP,
        "warn",
    ),
    74: (
        "NVLink error",
        "an NVLink link reported an error",
        _NVLINK,
        "fail",
    ),
    57: (
        "Error programming video memory interface",
        "the driver could not set up the video memory interface (VRAM training failed)",
        "reset the GPU; remove any memory overclock; repeated: the card's memory or its power "
        "delivery is failing (RMA)",
        "fail",
    ),
    58: (
        "Unstable video memory interface detected",
        "the video memory interface lost training (memory errors under load)",
        "remove any memory overclock, check VRAM temperatures and the card's power; repeated: RMA",
        "fail",
    ),
    79: (
        "GPU has fallen off the bus",
        "the GPU stopped answering on PCIe",
        _RISER,
        "fail",
    ),
    80: (
        "Corrupted data sent to GPU",
        "data reached the GPU corrupted (the PCIe link or system memory)",
        "check the PCIe link: AER errors on the slot path, reseat the riser/splitter; test the "
        "system memory",
        "fail",
    ),
    92: (
        "High single-bit ECC error rate",
        "many corrected memory errors",
        _MEMORY,
        "warn",
    ),
    94: (
        "Contained ECC error",
        "an uncorrectable memory error was contained to one program",
        _MEMORY,
        "warn",
    ),
    95: (
        "Uncontained ECC error",
        "an uncorrectable memory error affected every program on the GPU",
        _MEMORY,
        "fail",
    ),
    109: (
        "Context switch timeout",
        "a context switch did not finish in time",
        _APP,
        "warn",
    ),
    119: (
        "GSP RPC timeout",
        "the driver timed out waiting for the GPU System Processor",
        _GSP,
        "fail",
    ),
    120: (
        "GSP error",
        "the GPU System Processor reported an error",
        _GSP,
        "fail",
    ),
    140: (
        "Unrecovered ECC error",
        "an uncorrectable GPU memory error the driver could not recover from",
        _MEMORY,
        "fail",
    ),
    143: (
        "GPU initialization failure",
        "the GPU failed to initialize",
        "reseat the card, check its power cables and the riser; reset the GPU or reboot; "
        "repeated: RMA",
        "fail",
    ),
    145: (
        "NVLink error (newer code family)",
        "an NVLink unit reported an error (Xid 144-150 are the newer NVLink codes)",
        _NVLINK,
        "fail",
    ),
    149: (
        "NVLink error (newer code family)",
        "an NVLink unit reported an error (Xid 144-150 are the newer NVLink codes)",
        _NVLINK,
        "fail",
    ),
    154: (
        "GPU recovery action changed",
        "the driver says the GPU needs a recovery action (reset, reboot); the message names it",
        "do the action it names: reset the GPU (nvidia-smi -r / PF FLR) or reboot the node",
        "fail",
    ),
}

_UNKNOWN_XID = (
    "Unknown Xid",
    "a code not in rigctl's table",
    "look it up in NVIDIA's Xid catalog (docs.nvidia.com/deploy/xid-errors)",
    "warn",
)


def xid_info(code: int) -> dict:
    """What an Xid code means: ``code``, ``name``, ``meaning``, ``fix``, ``severity``
    (fail/warn/info) and ``known`` (False for codes not in :data:`XID_CODES`; those read
    as ``warn``)."""
    name, meaning, fix, severity = XID_CODES.get(int(code), _UNKNOWN_XID)
    return {
        "code": int(code),
        "name": name,
        "meaning": meaning,
        "fix": fix,
        "severity": severity,
        "known": int(code) in XID_CODES,
    }


# --- line prefixes ------------------------------------------------------------------------

_JOURNAL_RE = re.compile(
    r"^(?P<wall>[A-Z][a-z]{2}\s+\d{1,2} \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+)\s+\S+\s+kernel:\s?"
)
_DMESG_X_RE = re.compile(r"^[a-z]+\s*:[a-z]+\s*: ")
_DMESG_T_RE = re.compile(r"^\[(?P<wall>[A-Z][a-z]{2} [A-Z][a-z]{2}\s+\d{1,2} \d\d:\d\d:\d\d \d{4})\]\s?")
_UPTIME_RE = re.compile(r"^\[\s*(?P<t>\d+\.\d+)\]\s?")
_MONO_HOST_RE = re.compile(r"^\S+\s+kernel:\s?")


def split_kernel_prefix(line: str):
    """One kernel log line -> ``(uptime_seconds or None, wallclock or None, message)``.

    ``wallclock`` is the time as printed (``"Sep 19 16:18:02"``, ``"Fri Aug 29 20:09:52
    2025"``); ``uptime_seconds`` the ``[ 1234.567890]`` stamp as a float."""
    line = line.rstrip("\r\n")
    uptime = None
    wall = None
    match = _JOURNAL_RE.match(line)
    if match:
        wall = match.group("wall")
        line = line[match.end():]
    elif line.startswith("kernel: "):
        line = line[len("kernel: "):]
    else:
        match = _DMESG_X_RE.match(line)
        if match:
            line = line[match.end():]
    match = _DMESG_T_RE.match(line)
    if match:
        wall = match.group("wall")
        line = line[match.end():]
    match = _UPTIME_RE.match(line)
    if match:
        uptime = float(match.group("t"))
        line = line[match.end():]
        match = _MONO_HOST_RE.match(line)  # journalctl -o short-monotonic: host kernel:
        if match:
            line = line[match.end():]
    return uptime, wall, line.strip()


def _lines(text):
    if text is None:
        raise ValueError("expected kernel log text, got None")
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


_BUS_RE = r"[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?"


def _bus(value: str) -> str:
    value = value.strip()
    if value.upper().startswith("PCI:"):
        value = value[4:]
    if "." not in value.split(":")[-1]:
        value += ".0"
    return gpudb.normalize_bus_id(value)


# --- Xid ----------------------------------------------------------------------------------

_XID_RE = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<bus>" + _BUS_RE + r")\): (?P<code>\d+)(?:,\s*(?P<rest>.*))?$"
)
_XID_PID_RE = re.compile(r"^pid=(?P<pid>'?<unknown>'?|\d+), name=(?P<name>.*?), (?P<msg>.*)$")
_GPU_AT_RE = re.compile(r"NVRM: GPU at (?:PCI:)?(?P<bus>" + _BUS_RE + r"): (?P<uuid>GPU-[0-9a-fA-F-]+)")
_SERIAL_RE = re.compile(r"NVRM: GPU Board Serial Number: ?(?P<serial>\S*)")
_FELL_RE = re.compile(r"NVRM: GPU (?:PCI:)?(?P<bus>" + _BUS_RE + r"): GPU has fallen off the bus")
_LOAD_RE = re.compile(
    r"NVRM: loading NVIDIA UNIX .*?Kernel Module(?: for \S+)?\s+(?P<version>\d+\.\d+(?:\.\d+)?)"
)
_CAUSED_RE = re.compile(r"caused by previous Xid (\d+)")
_RECOVERY_RE = re.compile(r"recovery action changed from \S+ \(([^)]*)\) to \S+ \(([^)]*)\)")
_MAX_MESSAGES = 20


def _new_gpu(bus_id):
    return {
        "bus_id": bus_id,
        "uuid": None,
        "board_serial": None,
        "count": 0,
        "codes": [],
        "xids": [],
        "fallen_off_bus": False,
        "worst_severity": None,
    }


_SEVERITY_RANK = {None: 0, "info": 1, "warn": 2, "fail": 3}


def parse_xid(text: str) -> dict:
    """NVIDIA Xid events in a kernel log (see the module docstring for the line formats).

    Returns ``events`` (in log order: {``line`` (1-based), ``bus_id``, ``code``, ``pid``
    (int or None), ``process`` (None for ``<unknown>`` or the old format without it),
    ``message``, ``time`` (kernel uptime seconds or None), ``wallclock`` (as printed or
    None), ``severity``, ``caused_by`` (the code in ``caused by previous Xid N`` or None),
    ``recovery_action`` (Xid 154: the new action, e.g. ``"PF FLR"``, else None)}),
    ``gpus`` (bus id -> {``bus_id``, ``uuid``, ``board_serial``, ``count``, ``codes``
    (sorted), ``fallen_off_bus``, ``worst_severity`` (None without Xids), ``xids``: one
    entry per code, sorted: {``code``, ``name``, ``meaning``, ``fix``, ``severity``,
    ``known``, ``count``, ``first_time``, ``last_time``, ``first_wallclock``,
    ``last_wallclock``, ``messages`` (distinct, first 20), ``processes`` (distinct names),
    ``caused_by`` (sorted codes)}}; GPUs named only by ``GPU at`` lines appear with count 0),
    ``count`` (all events) and ``driver_version`` (from the last ``NVRM: loading`` line, or
    None).
    """
    events = []
    gpus: dict = {}
    driver_version = None
    last_gpu_at = None
    for number, raw in enumerate(_lines(text), 1):
        if "NVRM" not in raw:
            continue
        uptime, wall, line = split_kernel_prefix(raw)
        match = _LOAD_RE.search(line)
        if match:
            driver_version = match.group("version")
            continue
        match = _GPU_AT_RE.search(line)
        if match:
            bus_id = _bus(match.group("bus"))
            gpu = gpus.setdefault(bus_id, _new_gpu(bus_id))
            gpu["uuid"] = match.group("uuid")
            last_gpu_at = bus_id
            continue
        match = _SERIAL_RE.search(line)
        if match:
            if last_gpu_at is not None:
                gpus[last_gpu_at]["board_serial"] = match.group("serial") or None
            continue
        match = _FELL_RE.search(line)
        if match:
            bus_id = _bus(match.group("bus"))
            gpus.setdefault(bus_id, _new_gpu(bus_id))["fallen_off_bus"] = True
            continue
        if "NVRM: Xid" not in line:
            continue
        match = _XID_RE.search(line)
        if not match:
            raise ValueError(
                "kernel log line %d: an NVRM Xid line without the expected "
                "'NVRM: Xid (PCI:dddd:bb:dd): CODE, message' shape: %r" % (number, raw[:200])
            )
        rest = (match.group("rest") or "").strip()
        pid = process = None
        pid_match = _XID_PID_RE.match(rest)
        if pid_match:
            pid_text = pid_match.group("pid")
            pid = int(pid_text) if pid_text.isdigit() else None
            process = pid_match.group("name")
            if process in ("<unknown>", "'<unknown>'", ""):
                process = None
            rest = pid_match.group("msg").strip()
        code = int(match.group("code"))
        bus_id = _bus(match.group("bus"))
        info = xid_info(code)
        caused = _CAUSED_RE.search(rest)
        recovery = _RECOVERY_RE.search(rest) if code == 154 else None
        event = {
            "line": number,
            "bus_id": bus_id,
            "code": code,
            "pid": pid,
            "process": process,
            "message": rest,
            "time": uptime,
            "wallclock": wall,
            "severity": info["severity"],
            "caused_by": int(caused.group(1)) if caused else None,
            "recovery_action": recovery.group(2) if recovery else None,
        }
        events.append(event)
        gpu = gpus.setdefault(bus_id, _new_gpu(bus_id))
        if code == 79:
            gpu["fallen_off_bus"] = True
        entry = None
        for existing in gpu["xids"]:
            if existing["code"] == code:
                entry = existing
                break
        if entry is None:
            entry = dict(info)
            entry.update(
                count=0, first_time=uptime, first_wallclock=wall, last_time=None,
                last_wallclock=None, messages=[], processes=[], caused_by=[],
            )
            gpu["xids"].append(entry)
        entry["count"] += 1
        entry["last_time"] = uptime
        entry["last_wallclock"] = wall
        if rest and rest not in entry["messages"] and len(entry["messages"]) < _MAX_MESSAGES:
            entry["messages"].append(rest)
        if process and process not in entry["processes"]:
            entry["processes"].append(process)
        if event["caused_by"] is not None and event["caused_by"] not in entry["caused_by"]:
            entry["caused_by"].append(event["caused_by"])
            entry["caused_by"].sort()
        gpu["count"] += 1
        if _SEVERITY_RANK[info["severity"]] > _SEVERITY_RANK[gpu["worst_severity"]]:
            gpu["worst_severity"] = info["severity"]
    for gpu in gpus.values():
        gpu["xids"].sort(key=lambda e: e["code"])
        gpu["codes"] = [e["code"] for e in gpu["xids"]]
    return {"events": events, "gpus": gpus, "count": len(events), "driver_version": driver_version}


# --- AER ----------------------------------------------------------------------------------

# bit -> short name (lspci's CESta/UESta spelling), as in the PCIe AER status registers.
AER_CORRECTABLE_BITS = {
    0: "RxErr", 6: "BadTLP", 7: "BadDLLP", 8: "Rollover", 12: "Timeout",
    13: "AdvNonFatalErr", 14: "CorrIntErr", 15: "HeaderOF",
}
AER_UNCORRECTABLE_BITS = {
    0: "Undefined", 4: "DLP", 5: "SDES", 12: "TLP", 13: "FCP", 14: "CmpltTO", 15: "CmpltAbrt",
    16: "UnxCmplt", 17: "RxOF", 18: "MalfTLP", 19: "ECRC", 20: "UnsupReq", 21: "ACSViol",
    22: "UncorrIntErr", 23: "BlockedTLP", 24: "AtomicOpBlocked", 25: "TLPBlockedErr",
    26: "PoisonTLPBlocked",
}

_DEV_LINE_RE = re.compile(
    r"^(?P<drv>\S+) (?P<bdf>[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]): (?P<msg>.*)$"
)
_AER_RECEIVED_RE = re.compile(
    r"^AER: (?P<multi>Multiple )?(?P<sev>Corrected|Correctable|Uncorrected \([^)]*\)|"
    r"Uncorrectable \([^)]*\)|Fatal|Non-Fatal) error (?:message )?received"
    r"(?::\s*id=(?P<id>[0-9a-fA-F]{4})|:\s*(?P<src1>" + _BUS_RE + r")|\s+from\s+(?P<src2>" + _BUS_RE + r"))?"
)
_BUS_ERROR_RE = re.compile(
    r"^(?:AER: )?PCIe Bus Error: severity=(?P<sev>[^,]+), type=(?P<type>[^,]+),\s*"
    r"(?:id=(?P<id>[0-9a-fA-F]{4}))?\((?P<role>[^)]*)\)"
)
_STATUS_RE = re.compile(
    r"^(?:AER: )?\s*device \[(?P<vid>[0-9a-fA-F]{4}):(?P<did>[0-9a-fA-F]{4})\] error "
    r"status/mask=(?P<status>[0-9a-fA-F]+)/(?P<mask>[0-9a-fA-F]+)"
)
_BIT_RE = re.compile(r"^(?:AER: )?\s*\[\s*(?P<bit>\d+)\]\s+(?P<name>.*?)\s*(?P<first>\(First\))?\s*$")
# Older kernels' long names (and the newer short ones) -> correctable?
_CORRECTABLE_NAMES = {
    "Receiver Error", "Bad TLP", "Bad DLLP", "RELAY_NUM Rollover", "Replay Timer Timeout",
    "Advisory Non-Fatal", "Corrected Internal Error", "Header Log Overflow",
    "RxErr", "BadTLP", "BadDLLP", "Rollover", "Timeout", "NonFatalErr", "CorrIntErr", "HeaderOF",
}


def _severity(printed):
    if printed is None:
        return None
    value = printed.strip().lower()
    if value.startswith("correct"):
        return "corrected"
    if "non-fatal" in value or "nonfatal" in value:
        return "nonfatal"
    if "fatal" in value:
        return "fatal"
    return value


def _id_to_bdf(id_hex, domain):
    value = int(id_hex, 16)
    return "%s:%02x:%02x.%d" % (domain, value >> 8, (value >> 3) & 0x1F, value & 7)


def _finish_record(record):
    correctable = record["correctable"]
    if correctable is None and record["printed_errors"]:
        correctable = all(n in _CORRECTABLE_NAMES for n in record["printed_errors"])
        record["correctable"] = correctable
    table = AER_CORRECTABLE_BITS if correctable else AER_UNCORRECTABLE_BITS
    bits = set(record["bits"])
    if record["status"] is not None and correctable is not None:
        unmasked = record["status"] & ~(record["mask"] or 0)
        bits |= {b for b in range(32) if unmasked >> b & 1}
    if correctable is None:
        record["errors"] = list(record["printed_errors"])
    else:
        record["errors"] = [table.get(b, "bit%d" % b) for b in sorted(bits)]
        if record["first_bit"] is not None:
            record["first_error"] = table.get(record["first_bit"], "bit%d" % record["first_bit"])
    del record["bits"], record["first_bit"]


def parse_aer(text: str) -> dict:
    """PCIe AER error records in a kernel log (see the module docstring).

    Returns ``records`` (in log order: {``line``, ``device`` (bus id of the device the
    error is about), ``driver`` (the name printing it: ``pcieport``, ``nvidia``,
    ``ath10k_pci``...), ``reporter`` (the port whose ``AER: ... error received`` line came
    before, or None when the log starts inside a record), ``source`` (the requester named
    by that line, ``from <bdf>`` or the old ``id=``, decoded), ``severity`` (``corrected``,
    ``nonfatal``, ``fatal`` or None when not shown), ``severity_printed``, ``type``
    (``Physical Layer``, ``Data Link Layer``, ``Transaction Layer``), ``id_role``
    (``Receiver ID``, ``Transmitter ID``, ``Requester ID``...), ``correctable``,
    ``vendor_id``, ``device_id``, ``status``/``mask`` (ints), ``errors`` (short names, see
    the module docstring), ``printed_errors`` (names as printed), ``first_error``,
    ``multiple`` (``Multiple ... received``), ``time``, ``wallclock``}) and ``devices``
    (bus id -> {``bus_id``, ``driver``, ``vendor_id``, ``device_id``, ``count``,
    ``severities`` {severity: count}, ``types``, ``errors`` {short name: count},
    ``reporting_ports``, ``first_time``, ``last_time``, ``first_wallclock``,
    ``last_wallclock``, ``no_aer_driver`` (``device has no AER-aware driver`` was logged)}).
    """
    records = []
    devices: dict = {}
    current = None
    reporter = None
    source = None
    multiple = False

    def device_entry(bus_id, driver):
        entry = devices.get(bus_id)
        if entry is None:
            entry = devices[bus_id] = {
                "bus_id": bus_id, "driver": driver, "vendor_id": None, "device_id": None,
                "count": 0, "severities": {}, "types": [], "errors": {}, "reporting_ports": [],
                "first_time": None, "last_time": None, "first_wallclock": None,
                "last_wallclock": None, "no_aer_driver": False,
            }
        return entry

    def new_record(number, bus_id, driver, uptime, wall):
        record = {
            "line": number, "device": bus_id, "driver": driver, "reporter": reporter,
            "source": source, "severity": None, "severity_printed": None, "type": None,
            "id_role": None, "correctable": None, "vendor_id": None, "device_id": None,
            "status": None, "mask": None, "errors": [], "printed_errors": [],
            "first_error": None, "multiple": multiple, "time": uptime, "wallclock": wall,
            "bits": [], "first_bit": None,
        }
        records.append(record)
        return record

    for number, raw in enumerate(_lines(text), 1):
        if not raw.strip():
            continue
        uptime, wall, line = split_kernel_prefix(raw)
        match = _DEV_LINE_RE.match(line)
        if not match:
            continue
        driver, msg = match.group("drv"), match.group("msg")
        bus_id = _bus(match.group("bdf"))
        domain = bus_id.split(":")[0]
        received = _AER_RECEIVED_RE.match(msg)
        if received:
            reporter = bus_id
            multiple = bool(received.group("multi"))
            if received.group("id"):
                source = _id_to_bdf(received.group("id"), domain)
            else:
                src = received.group("src1") or received.group("src2")
                source = _bus(src) if src else None
            current = None
            continue
        if "PCIe Bus Error" in msg:
            match = _BUS_ERROR_RE.match(msg)
            if not match:
                raise ValueError(
                    "kernel log line %d: a 'PCIe Bus Error' line without the expected "
                    "'severity=..., type=..., (... ID)' shape: %r" % (number, raw[:200])
                )
            current = new_record(number, bus_id, driver, uptime, wall)
            current["severity_printed"] = match.group("sev").strip()
            current["severity"] = _severity(match.group("sev"))
            current["correctable"] = current["severity"] == "corrected"
            current["type"] = match.group("type").strip()
            current["id_role"] = match.group("role").strip() or None
            continue
        if "error status/mask=" in msg:
            match = _STATUS_RE.match(msg)
            if not match:
                raise ValueError(
                    "kernel log line %d: an AER 'error status/mask=' line without the expected "
                    "'device [vvvv:dddd] error status/mask=XXXXXXXX/XXXXXXXX' shape: %r"
                    % (number, raw[:200])
                )
            if current is None or current["device"] != bus_id or current["status"] is not None:
                current = new_record(number, bus_id, driver, uptime, wall)
                current["reporter"] = None  # the log starts inside this record
                current["source"] = None
            current["vendor_id"] = match.group("vid").lower()
            current["device_id"] = match.group("did").lower()
            current["status"] = int(match.group("status"), 16)
            current["mask"] = int(match.group("mask"), 16)
            continue
        match = _BIT_RE.match(msg)
        if match and current is not None and current["device"] == bus_id:
            bit = int(match.group("bit"))
            current["bits"].append(bit)
            current["printed_errors"].append(match.group("name"))
            if match.group("first"):
                current["first_bit"] = bit
            continue
        if "no AER-aware driver" in msg:
            device_entry(bus_id, driver)["no_aer_driver"] = True
    for record in records:
        _finish_record(record)
        entry = device_entry(record["device"], record["driver"])
        entry["count"] += 1
        entry["vendor_id"] = entry["vendor_id"] or record["vendor_id"]
        entry["device_id"] = entry["device_id"] or record["device_id"]
        severity = record["severity"] or "unknown"
        entry["severities"][severity] = entry["severities"].get(severity, 0) + 1
        if record["type"] and record["type"] not in entry["types"]:
            entry["types"].append(record["type"])
        for name in record["errors"]:
            entry["errors"][name] = entry["errors"].get(name, 0) + 1
        if record["reporter"] and record["reporter"] not in entry["reporting_ports"]:
            entry["reporting_ports"].append(record["reporter"])
        if entry["first_time"] is None:
            entry["first_time"] = record["time"]
        if entry["first_wallclock"] is None:
            entry["first_wallclock"] = record["wallclock"]
        entry["last_time"] = record["time"]
        entry["last_wallclock"] = record["wallclock"]
    return {"records": records, "devices": devices, "count": len(records)}


def parse_kernel_log(text: str) -> dict:
    """Both parsers over one kernel log: ``{"xid": parse_xid(text), "aer": parse_aer(text)}``."""
    return {"xid": parse_xid(text), "aer": parse_aer(text)}


# --- AER statistics in sysfs ---------------------------------------------------------------

# Names in /sys/bus/pci/devices/<bdf>/aer_dev_{correctable,nonfatal,fatal} (the kernel's
# AER driver; kernels before 5.x printed the long names) -> the short names above.
_AER_SYSFS_NAMES = {
    "Receiver Error": "RxErr", "Bad TLP": "BadTLP", "Bad DLLP": "BadDLLP",
    "RELAY_NUM Rollover": "Rollover", "Replay Timer Timeout": "Timeout",
    "NonFatalErr": "AdvNonFatalErr", "Advisory Non-Fatal": "AdvNonFatalErr",
    "Corrected Internal Error": "CorrIntErr", "Header Log Overflow": "HeaderOF",
    "Data Link Protocol": "DLP", "Surprise Down Error": "SDES", "Poisoned TLP": "TLP",
    "Flow Control Protocol": "FCP", "Completion Timeout": "CmpltTO",
    "Completer Abort": "CmpltAbrt", "Unexpected Completion": "UnxCmplt",
    "Receiver Overflow": "RxOF", "Malformed TLP": "MalfTLP", "Unsupported Request": "UnsupReq",
    "ACS Violation": "ACSViol", "Uncorrectable Internal Error": "UncorrIntErr",
    "MC Blocked TLP": "BlockedTLP", "AtomicOp Egress Blocked": "AtomicOpBlocked",
    "TLP Prefix Blocked Error": "TLPBlockedErr",
}
AER_COUNTER_FILES = {
    "correctable": ("aer_dev_correctable", "TOTAL_ERR_COR"),
    "nonfatal": ("aer_dev_nonfatal", "TOTAL_ERR_NONFATAL"),
    "fatal": ("aer_dev_fatal", "TOTAL_ERR_FATAL"),
}


def parse_aer_counters(text: str) -> dict:
    """One AER statistics file of a PCIe device (``aer_dev_correctable``,
    ``aer_dev_nonfatal``, ``aer_dev_fatal``): one ``Name count`` line per error (names as
    the kernel prints them: ``RxErr 2`` on newer kernels, ``Receiver Error 2`` on older
    ones) and a ``TOTAL_ERR_COR``/``TOTAL_ERR_NONFATAL``/``TOTAL_ERR_FATAL`` line.

    Returns ``errors`` (short name as :data:`AER_CORRECTABLE_BITS` /
    :data:`AER_UNCORRECTABLE_BITS` spell them -> count), ``total`` (the TOTAL line, or
    None without one) and ``total_key``. ValueError for a line that is not ``name count``.
    """
    errors = {}
    total = total_key = None
    for number, raw in enumerate(_lines(text), 1):
        line = raw.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise ValueError(
                "AER statistics line %d is not 'name count': %r" % (number, line[:120])
            )
        name, count = parts[0].strip(), int(parts[1])
        if name.startswith("TOTAL_"):
            total, total_key = count, name
            continue
        short = _AER_SYSFS_NAMES.get(name, name)
        errors[short] = errors.get(short, 0) + count
    return {"errors": errors, "total": total, "total_key": total_key}
