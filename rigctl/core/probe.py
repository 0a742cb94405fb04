"""rigctl-probe: building the GPU data-movement probe and judging its output.

Standard library only, Python 3.9 syntax: shipped to managed hosts as module_utils, and
imported by the CLI and the verification suites.

The probe is ``roles/cuda/files/rigctl-probe.cu`` (CUDA runtime API only, the runtime
linked statically), installed on a rig as :data:`PROBE_BINARY_PATH`. It copies data
host<->GPU and between every ordered pair of GPUs, compares it, and measures bandwidth and
latency.

Output contract (format 1)
--------------------------
stdout is JSON Lines: one JSON object per line, each with a ``"type"``; human messages go
to stderr. Lines come in this order (values below are illustrative):

``probe`` (always first)::

    {"type":"probe","probe":"rigctl-probe","format":1,"cuda_runtime":13000,"cuda_driver":13000,
     "device_count":2,"device_order":"PCI_BUS_ID","options":{"size_mib":64,"iterations":10,
     "p2p":true,"latency_bytes":4,"latency_copies":100}}

``cuda_runtime``/``cuda_driver`` are CUDA version numbers (1000*major + 10*minor);
``cuda_driver`` is 0 when no driver is installed. ``device_order`` is CUDA_DEVICE_ORDER as
the probe ran: it sets ``PCI_BUS_ID`` (nvidia-smi's order) unless the caller set it, so
device indexes match nvidia-smi's; match devices by ``pci_bus_id`` to be sure.
``options.p2p`` is false with ``--no-p2p``.

``device`` (one per CUDA device, in CUDA order)::

    {"type":"device","index":0,"name":"NVIDIA GeForce RTX 4090","pci_bus_id":"0000:01:00.0",
     "uuid":"GPU-6c0b...","compute_capability":"8.9","total_memory_bytes":25390809088,
     "multiprocessors":128,"usable":true,"kernel_ok":true,"ok":true,"error":null}

``usable``: context, buffers and pinned host memory were set up; ``kernel_ok``: a kernel
wrote a pattern that read back intact (false with ``cudaErrorNoKernelImageForDevice`` when
the binary was built without code for this GPU). ``pci_bus_id`` is lowercase.

``host_transfer`` (one per device; pinned host memory)::

    {"type":"host_transfer","device":0,"pci_bus_id":"0000:01:00.0","bytes":67108864,
     "iterations":10,"pinned":true,"h2d_gbps":24.6,"h2d_gbps_max":24.8,"d2h_gbps":26.1,
     "d2h_gbps_max":26.3,"data_ok":true,"mismatches":0,"first_mismatch_offset":null,
     "ok":true,"error":null}

``pair`` (one per ordered pair src -> dst)::

    {"type":"pair","src":0,"dst":1,"src_pci_bus_id":"0000:01:00.0","dst_pci_bus_id":"0000:02:00.0",
     "can_access_peer":true,"peer_access":true,"mode":"p2p","peer_access_error":null,
     "bytes":67108864,"iterations":10,"gbps":25.9,"gbps_max":26.2,"latency_bytes":4,
     "latency_us":1.9,"data_ok":true,"mismatches":0,"first_mismatch_offset":null,"ok":true,
     "error":null}

``mode`` is ``p2p`` when peer access src -> dst was enabled for the copies, ``staged``
when it was not (not possible, or ``--no-p2p``): the driver then stages the copy through
host memory. ``can_access_peer`` is what ``cudaDeviceCanAccessPeer`` said (null when it
failed); ``peer_access_error`` says why enabling failed although it was possible.

``error`` (a problem that belongs to no device or pair; ``stage`` is ``init``, ``host``
or ``usage``)::

    {"type":"error","stage":"init","call":"cudaGetDeviceCount","cuda_error":"cudaErrorInsufficientDriver",
     "code":35,"message":"CUDA driver version is insufficient for CUDA runtime version"}

``summary`` (always last, unless the probe was killed)::

    {"type":"summary","ok":true,"exit_code":0,"devices":2,"devices_failed":0,
     "host_transfers_failed":0,"pairs":2,"pairs_failed":0,"pairs_data_failed":0,"pairs_p2p":2,
     "pairs_staged":0,"errors":0}

Every ``error`` value (in device, host_transfer, pair lines) is null or an object
``{"call","cuda_error","code","message"}`` (``cuda_error``/``code`` null when the failure
is not a CUDA error). Measurements: bandwidth is GB/s (1e9 bytes/s); ``gbps`` is the
median of ``iterations`` timed single copies of ``bytes``, ``gbps_max`` the best one;
``latency_us`` is the median over ``iterations`` batches of 100 back-to-back 4-byte
copies, per copy. ``mismatches`` counts wrong 32-bit words over two read-backs (after a
first copy, and after the timed copies); ``first_mismatch_offset`` is a byte offset.

Exit codes: 0 every check passed, 1 some device/host/pair check failed, 2 usage error,
3 no usable GPU or driver (header, an ``init`` error line and a summary are still printed).

Lines of unknown ``type`` are ignored by the parser (forward compatible); a higher
``format`` is refused.

The simulated probe of a lab rig (``rigctl-simgpu probe``, the argv of
``gpulayer.layer()["probe"]`` there) prints the same lines with ``"simulated": true`` in
each; its figures are modelled, not measured. Per-pair judging (data both ways, faster than
staged, a fraction of link theory) is :mod:`rigctl.core.p2pverdict`'s; :func:`evaluate_probe`
below is the whole-run summary (every device, host transfer and pair ok).
"""

from __future__ import annotations

import json
import re

from . import gpudb

__all__ = [
    "PROBE_SOURCE",
    "PROBE_DIR",
    "PROBE_SOURCE_PATH",
    "PROBE_BINARY_PATH",
    "PROBE_BUILD_RECORD_PATH",
    "PROBE_FORMAT",
    "EXIT_OK",
    "EXIT_CHECK_FAILED",
    "EXIT_USAGE",
    "EXIT_NO_GPU",
    "parse_probe_output",
    "evaluate_probe",
    "compute_capability",
    "normalize_capability",
    "parse_toolkit_version",
    "supported_architectures",
    "arch_plan",
    "nvcc_arch_flags",
    "unsupported_capabilities",
    "build_command",
    "DEFAULT_CAPABILITIES",
]

PROBE_SOURCE = "rigctl-probe.cu"
PROBE_DIR = "/usr/local/lib/rigctl/probe"
PROBE_SOURCE_PATH = PROBE_DIR + "/" + PROBE_SOURCE
PROBE_BINARY_PATH = PROBE_DIR + "/rigctl-probe"
PROBE_BUILD_RECORD_PATH = PROBE_DIR + "/build.json"

PROBE_NAME = "rigctl-probe"
PROBE_FORMAT = 1

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_GPU = 3

# --- parsing ---------------------------------------------------------------------------

_LIST_KEYS = {"device": "devices", "host_transfer": "host_transfers", "pair": "pairs", "error": "errors"}


def parse_probe_output(text) -> dict:
    """The probe's stdout (JSON Lines) -> ``{"header", "devices", "host_transfers", "pairs",
    "errors", "summary", "complete"}``.

    ``header`` is the ``probe`` line; the lists hold the other lines' objects as printed, in
    order; ``summary`` is None and ``complete`` False when the output stops before the
    summary line (probe killed or crashed). Blank lines and lines of unknown type are
    ignored. Raises ``ValueError`` (with the line number) for a line that is not a JSON
    object with a string ``type``, for output that does not start with the header, for a
    format newer than this module knows, and for a second header or summary.
    """
    if text is None:
        raise ValueError("expected rigctl-probe output, got None")
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    result = {
        "header": None,
        "devices": [],
        "host_transfers": [],
        "pairs": [],
        "errors": [],
        "summary": None,
        "complete": False,
    }
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ValueError(
                "rigctl-probe output line %d is not JSON (%s): %r" % (number, exc, _clip(line))
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("type"), str):
            raise ValueError(
                'rigctl-probe output line %d is not a JSON object with a "type": %r' % (number, _clip(line))
            )
        kind = record["type"]
        if result["header"] is None:
            if kind != "probe" or record.get("probe") != PROBE_NAME:
                raise ValueError(
                    "not rigctl-probe output: line %d should be the header "
                    '{"type":"probe","probe":"rigctl-probe",...}, got %r' % (number, _clip(line))
                )
            fmt = record.get("format")
            if not isinstance(fmt, int) or isinstance(fmt, bool):
                raise ValueError("rigctl-probe header has no integer format: %r" % _clip(line))
            if fmt > PROBE_FORMAT:
                raise ValueError(
                    "rigctl-probe output format %d is newer than this rigctl understands (%d): "
                    "update rigctl or rebuild the probe from this rigctl's source" % (fmt, PROBE_FORMAT)
                )
            result["header"] = record
            continue
        if kind == "probe":
            raise ValueError("rigctl-probe output line %d: a second header" % number)
        if result["summary"] is not None:
            raise ValueError("rigctl-probe output line %d: a line after the summary" % number)
        if kind == "summary":
            result["summary"] = record
            result["complete"] = True
        elif kind in _LIST_KEYS:
            result[_LIST_KEYS[kind]].append(record)
    if result["header"] is None:
        raise ValueError(
            "no rigctl-probe header line in the output (empty output, or not rigctl-probe's stdout)"
        )
    return result


def _clip(line, limit=120):
    return line if len(line) <= limit else line[:limit] + "..."


# --- judging ---------------------------------------------------------------------------


def _pair_label(pair):
    return "%s -> %s" % (
        _gpu_label(pair.get("src"), pair.get("src_pci_bus_id")),
        _gpu_label(pair.get("dst"), pair.get("dst_pci_bus_id")),
    )


def _gpu_label(index, bus_id):
    if bus_id:
        return "GPU %s (%s)" % (index, bus_id)
    return "GPU %s" % (index,)


def _error_text(error):
    if not error:
        return None
    if isinstance(error, dict):
        name = error.get("cuda_error")
        message = error.get("message")
        call = error.get("call")
        parts = [p for p in (call, name, message) if p]
        return ": ".join(parts) if parts else json.dumps(error, sort_keys=True)
    return str(error)


def _pair_brief(pair):
    return {
        "src": pair.get("src"),
        "dst": pair.get("dst"),
        "src_pci_bus_id": pair.get("src_pci_bus_id"),
        "dst_pci_bus_id": pair.get("dst_pci_bus_id"),
        "label": "%s->%s" % (pair.get("src"), pair.get("dst")),
        "mode": pair.get("mode"),
        "can_access_peer": pair.get("can_access_peer"),
        "gbps": pair.get("gbps"),
        "latency_us": pair.get("latency_us"),
        "mismatches": pair.get("mismatches"),
        "error": _error_text(pair.get("error")),
    }


def evaluate_probe(parsed, expect_p2p=None, min_pair_gbps=None, min_host_gbps=None) -> dict:
    """Judge :func:`parse_probe_output` output.

    ``expect_p2p``: None, no judgment about peer access; True, every tested pair must have
    run with peer access (``mode`` ``p2p``); False, no pair may have (P2P is expected to be
    off, e.g. a rig without the patched module or run with ``--no-p2p``).
    ``min_pair_gbps`` / ``min_host_gbps``: optional bandwidth floors (GB/s, median) for
    GPU-to-GPU pairs and for host transfers (both directions).

    Returns ``ok``, ``complete``, ``exit_code`` (the summary's, or None), counts
    (``devices``, ``pairs_tested``, ``pairs_p2p``, ``pairs_staged``), the lists
    ``failed_devices``, ``failed_host_transfers``, ``data_failed_pairs`` (wrong data),
    ``error_pairs`` (a CUDA error stopped the pair), ``no_peer_access`` (pairs that ran
    staged), ``unexpected_p2p``, ``slow_pairs``, ``slow_host_transfers``, ``errors`` (the
    error lines' texts), ``problems`` (one line each) and ``text``, a one-line verdict.
    Pair entries are dicts with ``src``, ``dst``, bus ids, ``label`` ("0->1"), ``mode``,
    ``gbps``, ``latency_us``, ``mismatches`` and ``error``.
    """
    header = parsed.get("header") or {}
    devices = parsed.get("devices") or []
    hosts = parsed.get("host_transfers") or []
    pairs = parsed.get("pairs") or []
    summary = parsed.get("summary")
    problems = []

    errors = [_error_text(e) or "error" for e in parsed.get("errors") or []]
    for e in parsed.get("errors") or []:
        problems.append("probe error (%s): %s" % (e.get("stage"), _error_text(e)))

    failed_devices = []
    for d in devices:
        if d.get("ok") is False or d.get("kernel_ok") is False or d.get("error"):
            entry = {
                "index": d.get("index"),
                "pci_bus_id": d.get("pci_bus_id"),
                "name": d.get("name"),
                "error": _error_text(d.get("error")) or "device check failed",
            }
            failed_devices.append(entry)
            problems.append(
                "%s %s: %s"
                % (_gpu_label(entry["index"], entry["pci_bus_id"]), entry["name"] or "", entry["error"])
            )

    failed_hosts = []
    slow_hosts = []
    for h in hosts:
        label = _gpu_label(h.get("device"), h.get("pci_bus_id"))
        if h.get("ok") is False or h.get("data_ok") is False or h.get("error"):
            text = _error_text(h.get("error"))
            if h.get("mismatches"):
                text = "%s wrong words read back" % h.get("mismatches")
            failed_hosts.append({"device": h.get("device"), "pci_bus_id": h.get("pci_bus_id"), "error": text})
            problems.append("host <-> %s: %s" % (label, text or "transfer failed"))
        elif min_host_gbps is not None:
            slow = [
                (direction, h.get(key))
                for direction, key in (("h2d", "h2d_gbps"), ("d2h", "d2h_gbps"))
                if isinstance(h.get(key), (int, float)) and h.get(key) < min_host_gbps
            ]
            if slow:
                slow_hosts.append(
                    {"device": h.get("device"), "pci_bus_id": h.get("pci_bus_id"), "slow": dict(slow)}
                )
                problems.append(
                    "host <-> %s below %.1f GB/s: %s"
                    % (label, min_host_gbps, ", ".join("%s %.2f GB/s" % s for s in slow))
                )

    data_failed, error_pairs, no_peer, unexpected, slow_pairs = [], [], [], [], []
    for p in pairs:
        brief = _pair_brief(p)
        label = _pair_label(p)
        if p.get("mismatches") or (p.get("data_ok") is False and not p.get("error")):
            data_failed.append(brief)
            problems.append(
                "%s: data mismatch, %s wrong words (%s)" % (label, p.get("mismatches"), p.get("mode"))
            )
        elif p.get("error") or p.get("ok") is False:
            error_pairs.append(brief)
            problems.append("%s: %s" % (label, brief["error"] or "pair check failed"))
        if p.get("mode") != "p2p":
            no_peer.append(brief)
            if expect_p2p:
                if p.get("can_access_peer") is False:
                    why = "the driver reports no peer access possible"
                elif p.get("peer_access_error"):
                    why = "enabling failed: %s" % _error_text(p.get("peer_access_error"))
                elif header.get("options", {}).get("p2p") is False:
                    why = "probe ran with --no-p2p"
                else:
                    why = "peer access not enabled"
                problems.append("%s: no P2P (%s)" % (label, why))
        elif expect_p2p is False:
            unexpected.append(brief)
            problems.append("%s: P2P is active, but P2P is not expected" % label)
        gbps = p.get("gbps")
        if min_pair_gbps is not None and isinstance(gbps, (int, float)) and gbps < min_pair_gbps:
            slow_pairs.append(brief)
            problems.append(
                "%s: %.2f GB/s, below %.1f GB/s (%s)" % (label, gbps, min_pair_gbps, p.get("mode"))
            )

    complete = summary is not None
    if not complete:
        problems.append("probe output ends before its summary line (probe killed or crashed?)")
    device_count = header.get("device_count")
    if complete and not devices and not parsed.get("errors"):
        problems.append("no GPU found by the probe")
    if complete and summary.get("ok") is False and not problems:
        problems.append("probe reported failure (exit code %s)" % summary.get("exit_code"))

    p2p_count = sum(1 for p in pairs if p.get("mode") == "p2p")
    ok = not problems
    if ok:
        gbps_values = [p["gbps"] for p in pairs if isinstance(p.get("gbps"), (int, float))]
        text = "%d GPU(s), %d pair(s): data ok" % (len(devices), len(pairs))
        if pairs:
            text += ", P2P on %d/%d" % (p2p_count, len(pairs))
        if gbps_values:
            text += ", %.1f-%.1f GB/s" % (min(gbps_values), max(gbps_values))
    else:
        text = "FAILED: %s" % problems[0]
        if len(problems) > 1:
            text += " (and %d more problem(s))" % (len(problems) - 1)

    return {
        "ok": ok,
        "complete": complete,
        "exit_code": summary.get("exit_code") if complete else None,
        "devices": device_count if isinstance(device_count, int) else len(devices),
        "pairs_tested": len(pairs),
        "pairs_p2p": p2p_count,
        "pairs_staged": len(pairs) - p2p_count,
        "failed_devices": failed_devices,
        "failed_host_transfers": failed_hosts,
        "slow_host_transfers": slow_hosts,
        "data_failed_pairs": data_failed,
        "error_pairs": error_pairs,
        "no_peer_access": no_peer,
        "unexpected_p2p": unexpected,
        "slow_pairs": slow_pairs,
        "errors": errors,
        "problems": problems,
        "text": text,
    }


# --- compute capabilities --------------------------------------------------------------

# Default compute capability of each generation in gpudb.GENERATIONS: the consumer/workstation
# parts this project targets (GA10x 8.6, GB20x 12.0). Datacenter exceptions are named below.
_GENERATION_CAPABILITY = {
    "turing": "7.5",
    "ampere": "8.6",
    "ada": "8.9",
    "hopper": "9.0",
    "blackwell": "12.0",
}

# Model-name rules checked before the generation table, first match wins. Names are matched
# case-insensitively as whole tokens ("A100" does not match "A1000").
_NAME_CAPABILITY = (
    (r"\bGB10\b|DGX Spark", "12.1"),
    (r"\bG?B300\b", "10.3"),
    (r"\bG?B[12]00\b", "10.0"),
    (r"\bThor\b", "11.0"),
    (r"\bGH200\b|\bH[12]00\b|\bH800\b|\bH20\b", "9.0"),
    (r"\bA100\b|\bA800\b|\bA30\b", "8.0"),
    (r"\bOrin\b", "8.7"),
    (r"\bTITAN RTX\b|\bQuadro RTX\b|\bGTX 16\d\d|\bT4\b|\bT[46]00\b|\bT1000\b", "7.5"),
)

_CAPABILITY_RE = re.compile(r"^(?:sm_|compute_)?(\d{1,2})\.?(\d)[a-z]?$", re.IGNORECASE)
_DEVICE_ID_RE = re.compile(r"^(?:0x)?[0-9a-f]{4}(?:10de)?$", re.IGNORECASE)


def normalize_capability(value) -> str:
    """'8.6', 8.6, (8, 6), 'sm_86', 'compute_86', '86', '120', '12.0', 'sm_90a' -> '8.6' style.

    Raises ``ValueError`` for anything else.
    """
    if isinstance(value, (tuple, list)) and len(value) == 2:
        major, minor = value
        if isinstance(major, int) and isinstance(minor, int) and 0 <= minor <= 9 and major > 0:
            return "%d.%d" % (major, minor)
        raise ValueError("not a compute capability: %r" % (value,))
    if isinstance(value, float):
        value = "%.1f" % value
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        match = _CAPABILITY_RE.match(value.strip())
        if match and int(match.group(1)) > 0:
            return "%d.%s" % (int(match.group(1)), match.group(2))
    raise ValueError("not a compute capability: %r (expected e.g. '8.6' or 'sm_86')" % (value,))


def _cc_key(capability):
    major, minor = capability.split(".")
    return int(major), int(minor)


def _sm(capability):
    major, minor = _cc_key(capability)
    return "%d%d" % (major, minor)


def compute_capability(generation_or_name):
    """A GPU generation, model name, PCI device id or capability -> compute capability '8.6'.

    Generations are those of :data:`rigctl.core.gpudb.GENERATIONS`; where a generation has
    more than one capability the consumer one is the default (Ampere 8.6, Blackwell 12.0)
    and the model name decides the others (A100/A30 8.0, B200/GB200 10.0, B300 10.3, ...).
    Names as nvidia-smi or CUDA print them ("NVIDIA GeForce RTX 3090") and gpudb's model
    names work; a PCI device id known to gpudb ("2204", "0x2b85") is looked up. Already a
    capability ("8.6", "sm_86") -> normalized. Returns None when unknown.
    """
    if generation_or_name is None:
        return None
    if not isinstance(generation_or_name, str):
        try:
            return normalize_capability(generation_or_name)
        except ValueError:
            return None
    value = generation_or_name.strip()
    if not value:
        return None
    try:
        return normalize_capability(value)
    except ValueError:
        pass
    if value.lower() in _GENERATION_CAPABILITY:
        return _GENERATION_CAPABILITY[value.lower()]
    for pattern, capability in _NAME_CAPABILITY:
        if re.search(pattern, value, re.IGNORECASE):
            return capability
    generation = gpudb.generation_for_name(value)
    if generation is not None:
        return _GENERATION_CAPABILITY.get(generation.lower())
    if _DEVICE_ID_RE.match(value):
        model = gpudb.model_for_device(value)
        if model is not None:
            return compute_capability(model[0]) or _GENERATION_CAPABILITY.get(model[1].lower())
    return None


# --- CUDA toolkit versions and nvcc flags ----------------------------------------------

# Real architectures (sm_XY) nvcc accepts for -gencode, from the toolkit release notes and
# `nvcc --list-gpu-code`. Each entry holds from that version until the next one.
# 11.8 keeps sm_35/37 (deprecated); 12.0 drops them; 12.8 adds Blackwell (sm_100, sm_101,
# sm_120); 12.9 adds sm_103, sm_121; 13.0 drops Maxwell/Pascal/Volta (sm_50..sm_72),
# renames Thor sm_101 -> sm_110 and adds sm_88.
_KEPLER_TO_VOLTA = ("35", "37", "50", "52", "53", "60", "61", "62", "70", "72")
_TOOLKIT_ARCHS = (
    ((11, 0), _KEPLER_TO_VOLTA + ("75", "80")),
    ((11, 1), _KEPLER_TO_VOLTA + ("75", "80", "86")),
    ((11, 4), _KEPLER_TO_VOLTA + ("75", "80", "86", "87")),
    ((11, 8), _KEPLER_TO_VOLTA + ("75", "80", "86", "87", "89", "90")),
    ((12, 0), _KEPLER_TO_VOLTA[2:] + ("75", "80", "86", "87", "89", "90")),
    ((12, 8), _KEPLER_TO_VOLTA[2:] + ("75", "80", "86", "87", "89", "90", "100", "101", "120")),
    ((12, 9), _KEPLER_TO_VOLTA[2:] + ("75", "80", "86", "87", "89", "90", "100", "101", "103", "120", "121")),
    ((13, 0), ("75", "80", "86", "87", "88", "89", "90", "100", "103", "110", "120", "121")),
)

# Architectures of SoCs (Jetson Orin sm_87, Thor as sm_101 before CUDA 13.0): never used as
# the binary-compatible stand-in for another GPU of the same major version.
_SOC_ARCHS = ("87", "101")

# The GPUs of the rigs this project targets, used when no GPU is known: Ampere, Ada, Hopper,
# consumer Blackwell.
DEFAULT_CAPABILITIES = ("8.6", "8.9", "9.0", "12.0")

_VERSION_RE = re.compile(r"(\d+)\.(\d+)")


def parse_toolkit_version(version):
    """'11.8', '12.8.93', 'V13.0.88', (12, 8), 11.8 -> (major, minor). Raises ValueError."""
    if isinstance(version, (tuple, list)) and len(version) >= 2:
        return int(version[0]), int(version[1])
    if isinstance(version, float):
        version = "%.1f" % version
    if isinstance(version, str):
        match = _VERSION_RE.search(version)
        if match:
            return int(match.group(1)), int(match.group(2))
    raise ValueError("not a CUDA toolkit version: %r (expected e.g. '12.8')" % (version,))


def supported_architectures(toolkit_version) -> list:
    """The real architectures ('86', '120', ...) this toolkit's nvcc compiles for, oldest first.

    Versions newer than the last known one get its list; versions before 11.0 raise
    ``ValueError`` (rigctl builds with CUDA 11.0 or later).
    """
    key = parse_toolkit_version(toolkit_version)
    archs = None
    for since, table in _TOOLKIT_ARCHS:
        if key >= since:
            archs = table
    if archs is None:
        raise ValueError("CUDA toolkit %d.%d is too old: rigctl needs 11.0 or later" % key)
    return sorted(archs, key=int)


def arch_plan(toolkit_version, capabilities=None) -> dict:
    """What nvcc builds for these GPUs with this toolkit (the build record keeps it).

    For each capability: native code for it (``sm_XY``) when the toolkit knows it, else
    the newest sm_XZ of the same major with Z <= Y (binary compatible: 12.1 on a toolkit
    without sm_121 gets sm_120; the SoC architectures sm_87 and sm_101 never stand in).
    PTX (``code=compute_XY``) for the newest architecture the toolkit supports is always
    embedded, so GPUs newer than every cubin JIT-compile it.

    Capabilities without native code are listed in ``unsupported``; those newer than the
    PTX (it JIT-compiles for them at run time) in ``jit`` as well, the others (too old for
    this toolkit: nothing in the binary runs on them) in ``unusable``. With no
    capabilities, :data:`DEFAULT_CAPABILITIES` are used, as far as the toolkit supports
    them, and nothing is reported as unsupported.

    Returns ``{"toolkit": "12.8", "capabilities": [...], "sm": ["86", ...], "ptx": "120",
    "unsupported": [...], "jit": [...], "unusable": [...], "flags": [...]}``.
    """
    major, minor = parse_toolkit_version(toolkit_version)
    archs = supported_architectures((major, minor))
    arch_set = set(archs)
    ptx = archs[-1]
    wanted = []
    defaulted = not capabilities
    for value in DEFAULT_CAPABILITIES if defaulted else capabilities:
        capability = normalize_capability(value)
        if capability not in wanted:
            wanted.append(capability)
    wanted.sort(key=_cc_key)

    sm, unsupported, jit, unusable = [], [], [], []
    for capability in wanted:
        cc_major, cc_minor = _cc_key(capability)
        target = None
        if _sm(capability) in arch_set:
            target = _sm(capability)
        else:
            same_major = [
                a for a in archs if a[:-1] == str(cc_major) and int(a[-1]) <= cc_minor and a not in _SOC_ARCHS
            ]
            if same_major:
                target = same_major[-1]
        if target is not None:
            if target not in sm:
                sm.append(target)
            continue
        if defaulted:
            continue
        unsupported.append(capability)
        if (cc_major, cc_minor) > (int(ptx[:-1]), int(ptx[-1])):
            jit.append(capability)
        else:
            unusable.append(capability)

    sm.sort(key=int)
    flags = []
    for arch in sm:
        flags += ["-gencode", "arch=compute_%s,code=sm_%s" % (arch, arch)]
    flags += ["-gencode", "arch=compute_%s,code=compute_%s" % (ptx, ptx)]
    return {
        "toolkit": "%d.%d" % (major, minor),
        "capabilities": wanted,
        "sm": sm,
        "ptx": ptx,
        "unsupported": unsupported,
        "jit": jit,
        "unusable": unusable,
        "flags": flags,
    }


def nvcc_arch_flags(toolkit_version, capabilities=None) -> list:
    """The ``-gencode`` arguments for nvcc (see :func:`arch_plan`), e.g. for 11.8 and
    ['8.6', '12.0']: ``-gencode arch=compute_86,code=sm_86 -gencode
    arch=compute_90,code=compute_90`` (12.0 runs the compute_90 PTX; see
    :func:`unsupported_capabilities`)."""
    return arch_plan(toolkit_version, capabilities)["flags"]


def unsupported_capabilities(toolkit_version, capabilities) -> list:
    """The capabilities this toolkit cannot build native code for ('12.0' with 11.8)."""
    return arch_plan(toolkit_version, capabilities)["unsupported"]


def build_command(nvcc, source, output, toolkit_version, capabilities=None, ccbin=None) -> list:
    """argv that builds the probe: ``nvcc -O2 -std=c++14 -cudart static <gencode...>
    [-ccbin DIR] -o output source``.

    ``ccbin``: the host compiler or its directory, for when nvcc cannot find a supported
    one by itself (Debian's nvidia-cuda-toolkit 11.8 without the ``gcc`` package needs
    ``/usr/lib/nvidia-cuda-toolkit/bin``).
    """
    argv = [nvcc, "-O2", "-std=c++14", "-cudart", "static"]
    argv += nvcc_arch_flags(toolkit_version, capabilities)
    if ccbin:
        argv += ["-ccbin", ccbin]
    argv += ["-o", output, source]
    return argv
