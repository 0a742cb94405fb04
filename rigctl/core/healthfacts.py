"""Gathering what the rig health checks (:mod:`rigctl.core.health`) judge, on the rig.

Runs ON the managed host (module_utils of the ``rig_health`` module): standard library only,
Python 3.9 syntax. Everything is read through the GPU layer (:func:`gpulayer.layer`: the
real tools, or the simulated layer of a lab rig):

- the kernel log since boot: the layer's ``kernel_log`` argv (``journalctl -k -b --no-pager
  -o short-iso``), then ``dmesg`` on a real rig where journald has no kernel messages;
  parsed for Xid and AER lines (:mod:`kernlog`);
- the bridges above each GPU: the sysfs device path (``/sys/devices/pci0000:00/<root
  port>/.../<gpu>``), else ``lspci -vv`` bus numbers (:func:`pcitopo.upstream_bridges`);
  the AER counters of each GPU and bridge (``aer_dev_correctable|nonfatal|fatal``);
- ``nvidia-smi topo -m`` and ``nvidia-smi nvlink -s``; the host's NUMA node count;
- with ``load``, ``nvidia-smi --query-gpu`` samples (:data:`health.SAMPLE_FIELDS`) while the
  layer's ``probe`` runs (skipped while compute processes use the GPUs);
- ``dcgmi diag -r 1`` where dcgmi is installed.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
import time

from . import (
    benchout,
    gpufacts,
    gpulayer,
    gpumodel,
    health,
    hostfacts,
    kernlog,
    nvsmi,
    pcitopo,
    smiquery,
    smitopo,
)

_BDF_RE = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
PROBE_ARGS = ["--size-mib", "64", "--iterations", "10"]
LOAD_TIMEOUT_S = 180
MAX_RUNS = 3
MIN_LOADED_SAMPLES = 2
SAMPLE_INTERVAL_S = 0.25


def _first_line(text, default):
    lines = (text or "").strip().splitlines()
    return lines[0].strip() if lines else default


def read_kernel_log(gpu_layer):
    """(text, source, error): the kernel log since boot, from the GPU layer's reader
    (journalctl -k -b on a real rig), else dmesg on a real rig where journald holds no
    kernel log."""
    attempts = []
    if gpu_layer.get("kernel_log"):
        attempts.append(list(gpu_layer["kernel_log"]))
    if not gpu_layer["simulated"]:
        attempts.append(["dmesg"])
    errors = []
    for argv in attempts:
        rc, out, err = hostfacts.run(argv, timeout=60)
        lines = [ln for ln in (out or "").splitlines() if ln.strip() and not ln.startswith("-- ")]
        if rc == 0 and lines:
            return out, " ".join(argv), None
        errors.append("%s: %s" % (argv[0], _first_line(err, "no kernel messages") if rc == 0 or err
                                  else "rc=%d" % rc))
    if not attempts:
        errors.append("the GPU layer names no kernel log reader")
    return None, None, "; ".join(errors)


def sysfs_bridges(sys_root, bus_id):
    """Bridges above a device from its sysfs path (nearest first), or None when the tree
    does not show them (a flat tree)."""
    real = os.path.realpath(os.path.join(sys_root, "bus/pci/devices", bus_id))
    chain = [p.lower() for p in real.split(os.sep) if _BDF_RE.match(p)]
    if len(chain) < 2 or chain[-1] != bus_id:
        return None
    return list(reversed(chain[:-1]))


def read_aer_counters(sys_root, bus_id):
    out = {}
    for kind, (name, _total) in kernlog.AER_COUNTER_FILES.items():
        text = hostfacts.read(os.path.join(sys_root, "bus/pci/devices", bus_id, name))
        if text is None:
            out[kind] = None
            continue
        try:
            out[kind] = kernlog.parse_aer_counters(text)
        except ValueError:
            out[kind] = None
    return out


def query(smi, fields):
    rc, out, err = hostfacts.run(
        [smi, "--query-gpu=" + ",".join(fields), "--format=csv,noheader,nounits"], timeout=20
    )
    if rc != 0:
        return None, _first_line(err or out, "rc=%d" % rc)
    try:
        return smiquery.parse_query_gpu_csv(out, fields=list(fields)), None
    except ValueError as exc:
        return None, str(exc)


def sample_fields(smi):
    """The sample fields this driver answers: the clock event reasons under their R535+
    names, else the older clocks_throttle_reasons names, else none of them."""
    base = [f for f in health.SAMPLE_FIELDS if f not in health.THROTTLE_FIELDS]
    for extra in (list(health.THROTTLE_FIELDS), list(health.THROTTLE_FIELDS_OLD), []):
        rows, error = query(smi, base + extra)
        if rows is not None:
            return base + extra, None
    return None, error


def busy_processes(smi):
    rc, out, _ = hostfacts.run(
        [smi, "--query-compute-apps=pid,process_name,gpu_bus_id", "--format=csv"], timeout=20
    )
    if rc != 0:
        return None
    try:
        return nvsmi.parse_query_compute_apps_csv(out)
    except ValueError:
        return None


def run_load(gpu_layer, gpu_count):
    """Run the probe and sample the GPUs while it runs: {samples, error, probe, rc, runs,
    seconds}."""
    smi = gpu_layer["nvidia_smi"]
    probe = gpu_layer.get("probe")
    argv = [probe] if isinstance(probe, str) else list(probe or [])
    if not argv:
        return {"samples": [], "error": "the GPU layer names no probe"}
    if shutil.which(argv[0]) is None and not os.path.exists(argv[0]):
        return {"samples": [], "error": "the probe is not installed (%s): rigctl provision "
                "builds it with the cuda role" % argv[0]}
    busy = busy_processes(smi)
    if busy:
        names = ", ".join("%s (pid %s) on %s" % (p.get("process_name"), p.get("pid"), p.get("bus_id"))
                          for p in busy[:3])
        return {"samples": [], "error": "not loaded: %d compute process%s use the GPUs (%s)" % (
            len(busy), "" if len(busy) == 1 else "es", names)}
    fields, error = sample_fields(smi)
    if fields is None:
        return {"samples": [], "error": "nvidia-smi --query-gpu: %s" % error}
    samples, runs, rc, stderr = [], 0, None, ""
    start = time.time()
    # Run the probe again until every GPU was seen loaded MIN_LOADED_SAMPLES times (a fast
    # rig finishes one run within a second or two), at most MAX_RUNS runs.
    while runs < MAX_RUNS and time.time() - start < LOAD_TIMEOUT_S:
        runs += 1
        rc, stderr = _sampled_run(argv + PROBE_ARGS, smi, fields, samples, start)
        if rc != 0 or _loaded_enough(samples, gpu_count):
            break
    result = {"samples": samples, "error": None, "probe": " ".join(argv + PROBE_ARGS),
              "rc": rc, "runs": runs, "seconds": round(time.time() - start, 1)}
    if not samples:
        result["error"] = "no sample while the probe ran (rc %s%s)" % (
            rc, ": " + _first_line(stderr, "") if stderr.strip() else "")
    return result


def _sampled_run(argv, smi, fields, samples, start):
    """One probe run, sampling nvidia-smi while it runs: (rc, stderr)."""
    with tempfile.TemporaryFile() as err_file:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err_file,
                                env=dict(os.environ, LC_ALL="C"))
        time.sleep(SAMPLE_INTERVAL_S)
        while proc.poll() is None and time.time() - start < LOAD_TIMEOUT_S:
            rows, _ = query(smi, fields)
            if rows is not None and proc.poll() is None:  # still under load when read
                samples.extend(rows)
            time.sleep(SAMPLE_INTERVAL_S)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err_file.seek(0)
        return proc.returncode, err_file.read().decode("utf-8", "replace")


def _loaded_enough(samples, gpu_count):
    seen = {}
    for row in samples:
        if health.is_loaded(row):
            seen[row.get("pci.bus_id")] = seen.get(row.get("pci.bus_id"), 0) + 1
    return len(seen) >= gpu_count and min(seen.values()) >= MIN_LOADED_SAMPLES


def host_numa_nodes(gpu_layer):
    for root in (gpu_layer["sys_root"], "/sys"):
        nodes = glob.glob(os.path.join(root, "devices/system/node/node[0-9]*"))
        if nodes:
            return len(nodes)
    return None


def gather(gpu_layer=None, load=True, dcgm=True, root="/"):
    """What the health checks read on this host, through ``gpu_layer``
    (:func:`gpulayer.layer` when None): ``(data, sources)``, ``data`` the input of
    :func:`health.evaluate`, ``sources`` what was read from where and what could not be
    (small: no kernel log text, no samples)."""
    gpu_layer = gpu_layer or gpulayer.layer(root)
    pci, answer = hostfacts.read_gpus(gpu_layer)
    gpus = gpumodel.build(pci, answer["gpus"])
    smi = gpu_layer["nvidia_smi"]
    sources = {"driver": answer["error"]}
    data = {"gpus": gpus, "container": hostfacts.container_kind(root)}

    text, source, error = read_kernel_log(gpu_layer)
    log = {"source": source, "error": error, "xid": None, "aer": None}
    if text is not None:
        try:
            log["xid"] = kernlog.parse_xid(text)
            log["aer"] = kernlog.parse_aer(text)
        except ValueError as exc:
            log["error"] = "%s: %s" % (source, exc)
            log["xid"] = log["aer"] = None
    data["kernel_log"] = log
    sources["kernel_log"] = {"source": source, "error": log["error"],
                             "xid_events": log["xid"]["count"] if log["xid"] else None,
                             "aer_records": log["aer"]["count"] if log["aer"] else None}

    paths, devices, lspci_error = {}, None, None
    for gpu in gpus:
        bridges = sysfs_bridges(gpu_layer["sys_root"], gpu["bus_id"])
        if bridges is None:
            if devices is None and lspci_error is None:
                devices, lspci_error = gpufacts.read_lspci(gpu_layer)
            bridges = pcitopo.upstream_bridges(devices or [], gpu["bus_id"])
        paths[gpu["bus_id"]] = bridges
    counters = {}
    for bus in sorted({b for chain in paths.values() for b in chain} | set(paths)):
        counters[bus] = read_aer_counters(gpu_layer["sys_root"], bus)
    data["paths"], data["aer_counters"] = paths, counters
    sources["lspci"] = lspci_error

    driver = answer["available"]
    if driver and len(gpus) > 1:
        rc, out, err = hostfacts.run([smi, "topo", "-m"])
        try:
            data["topo"] = smitopo.parse_topo_matrix(out) if rc == 0 else None
            data["topo_error"] = None if rc == 0 else _first_line(err or out, "rc=%d" % rc)
        except ValueError as exc:
            data["topo"], data["topo_error"] = None, str(exc)
    if driver:
        rc, out, err = hostfacts.run([smi, "nvlink", "-s"])
        status, nv_error = None, None
        if rc == 0:
            try:
                status = nvsmi.parse_nvlink_status(out)
            except ValueError as exc:
                nv_error = str(exc)
        else:
            nv_error = _first_line(err or out, "rc=%d" % rc)
        data["nvlink"] = {"status": status, "error": nv_error}
        sources["nvlink"] = nv_error
    data["host_numa_nodes"] = host_numa_nodes(gpu_layer)

    if not gpus:
        data["load"] = {"samples": [], "error": "no NVIDIA GPU on PCI"}
    elif not driver:
        data["load"] = {"samples": [], "error": "the driver does not answer: %s" % answer["error"]}
    elif load:
        data["load"] = run_load(gpu_layer, len(gpus))
    else:
        data["load"] = {"samples": [], "error": "not asked (load: false)"}
    sources["load"] = {k: v for k, v in data["load"].items() if k != "samples"}
    sources["load"]["samples"] = len(data["load"]["samples"])

    dcgm_data = {"installed": shutil.which("dcgmi") is not None, "diag": None, "error": None}
    if not dcgm:
        dcgm_data["installed"] = False
        dcgm_data["error"] = "not asked (dcgm: false)"
    elif gpu_layer["simulated"]:
        dcgm_data["installed"] = False
        dcgm_data["error"] = "the GPUs are simulated: DCGM diagnoses real GPUs only"
    elif not dcgm_data["installed"]:
        dcgm_data["error"] = "dcgmi is not installed: DCGM diagnostics skipped"
    else:
        rc, out, err = hostfacts.run(["dcgmi", "diag", "-r", "1"], timeout=300)
        try:
            dcgm_data["diag"] = benchout.parse_dcgmi_diag(out + "\n" + err)
        except ValueError as exc:
            dcgm_data["error"] = str(exc)
    data["dcgm"] = dcgm_data
    sources["dcgm"] = dcgm_data["error"]
    sources["gpu_view"] = gpulayer.gpu_view(gpu_layer, gpus)
    sources["simulation"] = gpu_layer["simulation"]
    return data, sources
