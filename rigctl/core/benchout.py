"""Parsers of GPU benchmark and diagnostic outputs (text forms).

Standard library only, Python 3.9 syntax (shipped to managed hosts as module_utils). Pure
functions: text in, JSON-serializable dicts out; input that is clearly not the expected
format raises ``ValueError`` saying what was expected.

- NVIDIA ``nvbandwidth`` (text, v0.2 to v0.8 layouts)  -> :func:`parse_nvbandwidth`
- nccl-tests ``*_perf`` (e.g. ``all_reduce_perf``)      -> :func:`parse_nccl_tests`
- DCGM ``dcgmi diag -r N`` (the text table)             -> :func:`parse_dcgmi_diag`
"""

from __future__ import annotations

import re

from . import gpudb, parsers

__all__ = ["parse_nvbandwidth", "parse_nccl_tests", "parse_dcgmi_diag"]


_EXP_RE = re.compile(r"^[-+]?\d+(?:\.\d*)?[eE][-+]?\d+$")


def _num(token: str):
    """'12.25' / '16801' / '0e+00' -> float; anything else -> None."""
    value = parsers._number(token)
    if value is None and _EXP_RE.match(token.strip()):
        value = float(token)
    return float(value) if value is not None else None


# --- nvbandwidth ------------------------------------------------------------------------

_NVB_HEADER = {
    "nvbandwidth Version": "version",
    "Built from Git version": "git_version",
    "CUDA Runtime Version": "cuda_runtime_version",
    "CUDA Driver Version": "cuda_driver_version",
    "Driver Version": "driver_version",
}
_NVB_DEVICE_RE = re.compile(r"^Device (\d+): (.+?)\s*$")
_NVB_RUNNING_RE = re.compile(r"^Running (\S+?)\.?\s*$")
_NVB_TITLE_RE = re.compile(r"^(?P<title>.*\S)\s+\((?P<unit>GB/s|us|ns)\)\s*$")
_NVB_SUM_RE = re.compile(r"^SUM (\S+) (\S+)\s*$")


def parse_nvbandwidth(text: str) -> dict:
    """``nvbandwidth`` text output (all test cases, or ``-t NAME``).

    Returns ``version`` (``"v0.8"``), ``git_version``, ``cuda_runtime_version`` and
    ``cuda_driver_version`` (ints, e.g. 12030), ``driver_version``, ``devices`` (list of
    {``index``, ``name``}) and ``testcases``: name -> {``name``, ``title`` (e.g.
    ``"memcpy CE CPU(row) -> GPU(column) bandwidth"``), ``unit`` (``GB/s``), ``columns`` and
    ``rows`` (the int labels), ``matrix`` (list of rows, floats, ``N/A`` -> None; empty
    when the output stops after the column header), ``sum`` (the ``SUM name value`` line,
    float, or None) and ``status`` (``"waived"`` when nvbandwidth printed ``Waived``, else
    ``"measured"`` when a matrix row or SUM is there, else ``"incomplete"``)}. A test case's
    name comes from its ``Running NAME.`` line, else from its ``SUM`` line; one with
    neither is keyed ``"#N"`` (N = its position, from 1). Lines the tool prints that are not
    listed here are ignored. ValueError for text with neither an nvbandwidth header nor a
    bandwidth matrix, and for a matrix row whose cell count does not match its header.
    """
    header: dict = {key: None for key in _NVB_HEADER.values()}
    devices = []
    order = []
    current = None
    pending_name = None
    seen_header = False

    def close():
        if current is not None:
            if current["status"] == "incomplete" and (current["matrix"] or current["sum"] is not None):
                current["status"] = "measured"
            order.append(current)

    for number, raw in enumerate(parsers._lines(text), 1):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        if sep and key.strip() in _NVB_HEADER and current is None:
            name = _NVB_HEADER[key.strip()]
            value = value.strip()
            header[name] = int(value) if name.startswith("cuda_") and value.isdigit() else value
            seen_header = True
            continue
        match = _NVB_DEVICE_RE.match(line)
        if match and current is None:
            devices.append({"index": int(match.group(1)), "name": match.group(2)})
            continue
        match = _NVB_RUNNING_RE.match(line)
        if match:
            close()
            current = None
            pending_name = match.group(1)
            continue
        match = _NVB_SUM_RE.match(line)
        if match:
            if current is None or (current["name"] and current["name"] != match.group(1)):
                close()
                current = _nvb_case(match.group(1), None, None)
            current["name"] = current["name"] or match.group(1)
            current["sum"] = _num(match.group(2))
            close()
            current = None
            continue
        if line.lower().startswith("waived"):
            if current is None:
                current = _nvb_case(pending_name, None, None)
                pending_name = None
            current["status"] = "waived"
            continue
        match = _NVB_TITLE_RE.match(line)
        if match and not line[0].isdigit():
            close()
            current = _nvb_case(pending_name, match.group("title"), match.group("unit"))
            pending_name = None
            continue
        tokens = line.split()
        if current is None or not tokens or not all(t.isdigit() for t in tokens[:1]):
            continue
        if current["columns"] is None:
            if all(t.isdigit() for t in tokens):
                current["columns"] = [int(t) for t in tokens]
            continue
        cells = tokens[1:]
        if len(cells) != len(current["columns"]):
            raise ValueError(
                "nvbandwidth line %d: row %s has %d cells for %d columns: %r"
                % (number, tokens[0], len(cells), len(current["columns"]), line[:200])
            )
        values = []
        for cell in cells:
            if cell == "N/A":
                values.append(None)
                continue
            number_value = _num(cell)
            if number_value is None:
                raise ValueError(
                    "nvbandwidth line %d: cell %r is neither a number nor N/A" % (number, cell)
                )
            values.append(number_value)
        current["rows"].append(int(tokens[0]))
        current["matrix"].append(values)
    close()
    if not seen_header and not order:
        raise ValueError(
            "not nvbandwidth output: no 'nvbandwidth Version:' header and no "
            "'... bandwidth (GB/s)' matrix"
        )
    testcases = {}
    for position, case in enumerate(order, 1):
        testcases[case["name"] or "#%d" % position] = case
    result = dict(header)
    result["devices"] = devices
    result["testcases"] = testcases
    return result


def _nvb_case(name, title, unit):
    return {
        "name": name,
        "title": title,
        "unit": unit,
        "columns": None,
        "rows": [],
        "matrix": [],
        "sum": None,
        "status": "incomplete",
    }


# --- nccl-tests -------------------------------------------------------------------------

_NCCL_VERSION_RE = re.compile(
    r"^# nccl-tests version (?P<version>\S+)(?: nccl-headers=(?P<headers>\d+))?"
    r"(?: nccl-library=(?P<library>\d+))?"
)
_NCCL_TEST_RE = re.compile(r"^# Collective test starting: (\S+)")
_NCCL_RANK_RE = re.compile(
    r"^#\s+Rank\s+(?P<rank>\d+)\s+(?:Group\s+(?P<group>\d+)\s+)?Pid\s+(?P<pid>\d+)\s+on\s+"
    r"(?P<host>\S+)\s+device\s+(?P<device>\d+)\s+\[(?P<bus>[^\]]+)\]\s+(?P<name>.*?)\s*$"
)
_NCCL_PARAM_RE = re.compile(
    r"(nThread|nGpus|minBytes|maxBytes|step:|warmup iters:|iters:|agg iters:|validation:|"
    r"graph:|unalign:)\s*(\S+)"
)
_NCCL_GROUP = ("time_us", "algbw", "busbw", "wrong")


def _nccl_bus(value: str):
    """'0000:b4:00' -> ('0000:b4:00.0', 0xb4); older '0x1a' -> (None, 0x1a)."""
    value = value.strip()
    if value.lower().startswith("0x"):
        return None, int(value, 16)
    try:
        bus_id = gpudb.normalize_bus_id(value if "." in value else value + ".0")
    except ValueError:
        return None, None
    return bus_id, int(bus_id.split(":")[1], 16)


def parse_nccl_tests(text: str) -> dict:
    """nccl-tests output (``all_reduce_perf`` and the other ``*_perf`` tests).

    Returns ``version`` (``# nccl-tests version 2.18.2``; None in older builds),
    ``nccl_headers``/``nccl_library`` (ints or None), ``test`` (``# Collective test
    starting: NAME``, or None), ``params`` (from the ``# nThread 1 nGpus 8 minBytes ...``
    line: ``nThread``, ``nGpus``, ``minBytes``, ``maxBytes``, ``step``, ``warmup_iters``,
    ``iters``, ``agg_iters``, ``validation``, ``graph``, ``unalign`` when printed; numbers
    as int, ``step`` as printed e.g. ``"2(factor)"``), ``devices`` (per ``# Rank`` line:
    ``rank``, ``group``, ``pid``, ``host``, ``device``, ``bus_id`` (normalized, None when
    the old format prints only ``[0x1a]``), ``pci_bus`` (int), ``name``), ``nranks`` (number
    of Rank lines, else nThread x nGpus), ``columns`` (the header's column names),
    ``rows`` (per message size: ``size`` (bytes), ``count``, ``type``, ``redop``, ``root``
    (when the header has them), ``out_of_place`` and ``in_place`` each {``time_us``,
    ``algbw``, ``busbw`` (GB/s floats), ``wrong`` (int, None for ``N/A``); builds whose
    header says ``error`` instead of ``#wrong`` give ``error`` (float) and ``wrong`` None}),
    ``avg_bus_bandwidth`` (``# Avg bus bandwidth`` float, None when the output stops
    before it), ``out_of_bounds`` (int or None), ``out_of_bounds_ok`` (bool or None),
    ``max_busbw`` (highest busbw of all rows, None without rows) and ``wrong_total``.
    ValueError when there is no results header (``size count type ...``) or a result row
    has a different number of values than the header.
    """
    result = {
        "version": None, "nccl_headers": None, "nccl_library": None, "test": None,
        "params": {}, "devices": [], "nranks": None, "columns": None, "rows": [],
        "avg_bus_bandwidth": None, "out_of_bounds": None, "out_of_bounds_ok": None,
        "max_busbw": None, "wrong_total": 0,
    }
    lead = None
    for number, raw in enumerate(parsers._lines(text), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            match = _NCCL_VERSION_RE.match(line)
            if match:
                result["version"] = match.group("version")
                for key, group in (("nccl_headers", "headers"), ("nccl_library", "library")):
                    if match.group(group):
                        result[key] = int(match.group(group))
                continue
            match = _NCCL_TEST_RE.match(line)
            if match:
                result["test"] = match.group(1)
                continue
            if "nThread" in line and "nGpus" in line:
                for key, value in _NCCL_PARAM_RE.findall(line):
                    name = key.rstrip(":").replace(" ", "_")
                    result["params"][name] = int(value) if value.isdigit() else value
                continue
            match = _NCCL_RANK_RE.match(line)
            if match:
                bus_id, pci_bus = _nccl_bus(match.group("bus"))
                result["devices"].append({
                    "rank": int(match.group("rank")),
                    "group": int(match.group("group")) if match.group("group") else None,
                    "pid": int(match.group("pid")),
                    "host": match.group("host"),
                    "device": int(match.group("device")),
                    "bus_id": bus_id,
                    "pci_bus": pci_bus,
                    "name": match.group("name"),
                })
                continue
            body = line.lstrip("#").strip()
            tokens = body.split()
            if tokens[:2] == ["size", "count"]:
                result["columns"] = tokens
                lead = tokens.index("time") if "time" in tokens else None
                if lead is None or (len(tokens) - lead) % 2:
                    raise ValueError(
                        "nccl-tests line %d: a results header without two time/algbw/busbw "
                        "groups: %r" % (number, line[:200])
                    )
                continue
            if body.startswith("Avg bus bandwidth"):
                result["avg_bus_bandwidth"] = _num(body.split(":", 1)[1])
                continue
            if body.startswith("Out of bounds values"):
                match = re.search(r":\s*(\d+)\s*(\S+)?", body)
                if match:
                    result["out_of_bounds"] = int(match.group(1))
                    result["out_of_bounds_ok"] = match.group(2) == "OK"
                continue
            continue
        tokens = line.split()
        if result["columns"] is None or not tokens[0].isdigit():
            continue
        columns = result["columns"]
        if len(tokens) != len(columns):
            raise ValueError(
                "nccl-tests line %d: %d values for the %d header columns: %r"
                % (number, len(tokens), len(columns), line[:200])
            )
        row: dict = {}
        for index in range(lead):
            name, token = columns[index], tokens[index]
            if name in ("size", "count", "root"):
                row[name] = int(token)
            else:
                row[name] = token
        half = (len(tokens) - lead) // 2
        for label, start in (("out_of_place", lead), ("in_place", lead + half)):
            group = tokens[start : start + half]
            entry = {
                "time_us": _num(group[0]),
                "algbw": _num(group[1]),
                "busbw": _num(group[2]),
                "wrong": int(group[3]) if len(group) > 3 and group[3].isdigit() else None,
            }
            if len(group) > 3 and columns[start + 3] == "error":  # very old builds: max error
                entry["error"] = _num(group[3])
            if entry["wrong"]:
                result["wrong_total"] += entry["wrong"]
            row[label] = entry
        result["rows"].append(row)
    if result["columns"] is None:
        raise ValueError(
            "not nccl-tests output: no results header ('#  size  count  type  redop  root  "
            "time  algbw  busbw  #wrong ...')"
        )
    if result["devices"]:
        result["nranks"] = len(result["devices"])
    elif isinstance(result["params"].get("nThread"), int) and isinstance(result["params"].get("nGpus"), int):
        result["nranks"] = result["params"]["nThread"] * result["params"]["nGpus"]
    busbw = [
        row[side]["busbw"] for row in result["rows"] for side in ("out_of_place", "in_place")
        if row[side]["busbw"] is not None
    ]
    result["max_busbw"] = max(busbw) if busbw else None
    return result


# --- dcgmi diag -------------------------------------------------------------------------

_DCGM_SECTION_RE = re.compile(r"^[|+]-+\s+(?P<name>[A-Za-z][A-Za-z0-9 /-]*?)\s+-+\+")
_DCGM_RESULTS = ("Pass", "Fail", "Skip", "Warn", "Not Run", "Not run")


def _dcgm_run():
    return {"metadata": {}, "sections": [], "tests": [], "results": {}}


def parse_dcgmi_diag(text: str) -> dict:
    """``dcgmi diag -r N`` text output (the boxed ``Diagnostic | Result`` table).

    Per table (one "run"): ``metadata`` (the ``Metadata`` section's rows, e.g. ``DCGM
    Version``), ``sections`` (in order: ``Deployment``, ``Integration``, ``Hardware``,
    ``Stress``...), ``tests`` (per row of the other sections: {``section``, ``name``,
    ``result`` (``Pass``/``Fail``/``Skip``/``Warn``/``Not Run``, or None when the cell does
    not start with one), ``detail`` (after `` - ``, e.g. ``"All"``), ``text`` (the cell as
    printed), ``details`` (continuation rows with an empty first cell, such as warnings)})
    and ``results`` (test name -> result).

    Returns the last table's fields at the top level (``metadata``, ``sections``,
    ``tests``, ``results``) plus ``dcgm_version``, ``driver_version``,
    ``gpu_device_ids`` (list, from ``GPU Device IDs Detected``), ``runs`` (every table, in
    order: output that prints the result twice gives two), ``success_lines`` (count of
    ``Successfully ran diagnostic`` lines), ``failed`` (names whose result is Fail),
    ``warned`` (Warn) and ``passed`` (True when no test failed). The text output does not
    state the run level (``-r``). ValueError when there is no ``Diagnostic | Result``
    table (DCGM prints ``Error: ...`` instead when it cannot run).
    """
    runs = []
    run = None
    section = None
    success = 0
    errors = []
    for raw in parsers._lines(text):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("Successfully ran diagnostic"):
            success += 1
            continue
        if line.lower().startswith("error"):
            errors.append(line)
            continue
        match = _DCGM_SECTION_RE.match(line)
        if match and run is not None:
            section = match.group("name").strip()
            if section != "Metadata" and section not in run["sections"]:
                run["sections"].append(section)
            continue
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) < 2:
            continue
        name, value = cells[0], " ".join(c for c in cells[1:] if c)
        if name == "Diagnostic" and value == "Result":
            run = _dcgm_run()
            runs.append(run)
            section = None
            continue
        if run is None:
            continue
        if not name:
            if run["tests"] and value:
                run["tests"][-1]["details"].append(value)
            continue
        if section == "Metadata" or section is None:
            run["metadata"][name] = value
            continue
        result = None
        detail = None
        for candidate in _DCGM_RESULTS:
            if value == candidate or value.startswith(candidate + " "):
                result = "Not Run" if candidate.lower() == "not run" else candidate
                rest = value[len(candidate):].strip()
                detail = rest[1:].strip() if rest.startswith("-") else (rest or None)
                break
        run["tests"].append(
            {"section": section, "name": name, "result": result, "detail": detail, "text": value,
             "details": []}
        )
        run["results"][name] = result
    if not runs:
        raise ValueError(
            "not dcgmi diag output: no 'Diagnostic | Result' table"
            + (" (it says: %s)" % errors[0][:200] if errors else "")
        )
    last = runs[-1]
    ids = last["metadata"].get("GPU Device IDs Detected")
    return {
        "dcgm_version": last["metadata"].get("DCGM Version"),
        "driver_version": last["metadata"].get("Driver Version Detected"),
        "gpu_device_ids": [i.strip() for i in ids.split(",") if i.strip()] if ids else [],
        "metadata": last["metadata"],
        "sections": last["sections"],
        "tests": last["tests"],
        "results": last["results"],
        "runs": runs,
        "success_lines": success,
        "failed": [t["name"] for t in last["tests"] if t["result"] == "Fail"],
        "warned": [t["name"] for t in last["tests"] if t["result"] == "Warn"],
        "passed": not any(t["result"] == "Fail" for t in last["tests"]),
    }
