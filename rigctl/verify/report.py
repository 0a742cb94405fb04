"""`rigctl verify --report PATH`: the run as one self-contained HTML page or as Markdown.

Per rig: what was verified (gpu_view; a rig on simulated GPUs says so in its heading and
every passed check there reads ``passed (simulated)``), its GPUs (links, BAR1, power limits),
the P2P matrix (GB/s, % of the link's theory, verdict per ordered pair), what nccl.conf says
and which evidence decided it, the health findings, and every check with expected, found and
fix. The data comes from the checks' results and from what the suites attached
(:func:`rigctl.verify.checks.attach`). The HTML has no external assets (inline CSS, no
scripts, no fonts or images from anywhere): it reads the same offline.
"""

from __future__ import annotations

import datetime
import html

from rigctl.verify.run import VerifyResult

OUTCOME_TEXT = {
    "passed": "passed",
    "simulated": "passed (simulated)",
    "warn": "warn",
    "recorded": "recorded, not observed",
    "failed": "FAILED",
    "error": "ERROR",
    "skipped": "skipped",
    "unreachable": "UNREACHABLE",
    "refused": "REFUSED",
}
VIEW_TEXT = {
    "real": "real GPUs",
    "simulated": "SIMULATED GPUs (lab rig): nothing here was measured on real hardware",
    "none": "no NVIDIA GPU on this host",
    "unknown": "GPUs not read",
}
VERDICT_TEXT = {
    "ok": "ok",
    "slow": "slow",
    "no-gain": "no faster than staged",
    "no-peer": "no P2P",
    "wrong-data": "WRONG DATA",
    "error": "ERROR",
    "not-measured": "not measured",
}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#1b1b1b}
h1{font-size:1.4em}h2{font-size:1.2em;border-bottom:2px solid #444;margin-top:2em}
h3{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;margin:.4em 0 1em}
th,td{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top;font-size:.9em}
th{background:#eee}
.sim{background:#fff3cd;border:2px solid #c99a00;padding:.5em;font-weight:bold}
.o-passed{background:#d4edda}.o-simulated{background:#fff3cd}.o-warn{background:#ffe8a1}
.o-failed,.o-error,.o-unreachable,.o-refused{background:#f8d7da}.o-skipped{color:#666}
.o-recorded{background:#d1ecf1}
.v-ok{background:#d4edda}.v-slow{background:#ffe8a1}
.v-no-gain,.v-wrong-data,.v-error{background:#f8d7da}.v-no-peer{background:#e9ecef}
.v-not-measured{color:#666}
.self{background:#ddd}.muted{color:#666}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value, digits=1):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "?"
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def outcome_text(outcome: str) -> str:
    return OUTCOME_TEXT.get(outcome, outcome)


def rig_report(result: VerifyResult, host: str) -> dict:
    """What the suites attached for ``host`` (``{}`` when nothing)."""
    return result.report(host)


def _link_text(link: dict | None) -> str:
    link = link or {}
    cur = f"Gen{link.get('gen_current') or '?'} x{link.get('width_current') or '?'}"
    top = f"Gen{link.get('gen_max') or '?'} x{link.get('width_max') or '?'}"
    return f"{cur} (max {top})"


def _power_text(power: dict | None) -> str:
    p = power or {}
    if p.get("current_w") is None:
        return "?"
    return (f"{_num(p.get('current_w'), 0)} W (default {_num(p.get('default_w'), 0)}, "
            f"range {_num(p.get('min_w'), 0)}-{_num(p.get('max_w'), 0)})")


def _gpu_rows(gpus: list) -> list[list[str]]:
    rows = []
    for g in gpus or []:
        clocks = g.get("clocks") or {}
        locked = clocks.get("locked_mhz")
        lock = (f"{locked[0]}-{locked[1]} MHz ({clocks.get('locked_source')})"
                if isinstance(locked, (list, tuple)) and len(locked) == 2 else "unlocked")
        rows.append([
            str(g.get("index")), str(g.get("bus_id")), str(g.get("name")),
            _link_text(g.get("link")),
            f"{g.get('bar1_mib')} MiB" if g.get("bar1_mib") is not None else "?",
            f"{g.get('vram_mib')} MiB" if g.get("vram_mib") is not None else "?",
            _power_text(g.get("power")), lock,
        ])
    return rows


GPU_COLUMNS = ["GPU", "bus id", "name", "PCIe link", "BAR1", "VRAM", "power limit", "clock lock"]


def p2p_cells(p2p: dict) -> tuple[list, dict]:
    """(GPU indexes, {(src, dst): pair verdict}) of an attached ``p2p`` verdict."""
    pairs = {(p["src"], p["dst"]): p for p in (p2p or {}).get("pairs") or []}
    gpus = list((p2p or {}).get("gpus") or sorted({k[0] for k in pairs} | {k[1] for k in pairs}))
    return gpus, pairs


def cell_text(pair: dict) -> str:
    """``25.9 GB/s, 82% of PCIe Gen4 x16, ok`` for one pair."""
    parts = [f"{_num(pair.get('gbps'), 2)} GB/s" if pair.get("gbps") is not None else "no bandwidth"]
    if pair.get("fraction") is not None:
        parts.append(f"{round(pair['fraction'] * 100)}% of link")
    parts.append(VERDICT_TEXT.get(pair.get("verdict"), str(pair.get("verdict"))))
    return ", ".join(parts)


def _checks_rows(result, host):
    rows = []
    for c in result.hosts().get(host, []):
        d = c.details or {}
        rows.append((c.outcome, [c.module, c.name, outcome_text(c.outcome), c.message,
                                 d.get("expected", ""), d.get("found", ""), d.get("fix", "")]))
    return rows


CHECK_COLUMNS = ["suite", "check", "outcome", "message", "expected", "found", "fix"]
HEALTH_COLUMNS = ["check", "GPU", "severity", "evidence", "fix"]


def _stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- HTML ---------------------------------------------------------------------------------


def _table(columns, rows, row_classes=None, attrs="") -> str:
    out = [f"<table{attrs}><thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in columns)
           + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = f' class="{_e(row_classes[i])}"' if row_classes and row_classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _p2p_html(host: str, p2p: dict) -> str:
    gpus, pairs = p2p_cells(p2p)
    if not pairs:
        return '<p class="muted">No P2P measurement for this rig.</p>'
    sim = " (simulated GPUs)" if p2p.get("simulated") else ""
    out = [f"<p>{_e(p2p.get('text'))}</p>",
           f"<p class=\"muted\">Evidence: {_e(p2p.get('source'))}{_e(sim)}. Rows send, columns "
           "receive; bandwidth is the median of the timed copies, % is of the narrowest link's "
           "per-direction theory.</p>",
           f'<table class="p2p" id="p2p-{_e(host)}" data-host="{_e(host)}"><thead><tr>'
           "<th>src \\ dst</th>" + "".join(f"<th>GPU {_e(g)}</th>" for g in gpus) + "</tr></thead><tbody>"]
    for a in gpus:
        out.append(f"<tr><th>GPU {_e(a)}</th>")
        for b in gpus:
            if a == b:
                out.append('<td class="self">-</td>')
                continue
            pair = pairs.get((a, b))
            if pair is None:
                out.append('<td class="v-not-measured">not measured</td>')
                continue
            title = f"{pair.get('reason')}" + (f" | fix: {pair['fix']}" if pair.get("fix") else "")
            out.append(
                f'<td class="v-{_e(pair.get("verdict"))}" data-src="{_e(a)}" data-dst="{_e(b)}" '
                f'data-gbps="{_e(pair.get("gbps"))}" data-verdict="{_e(pair.get("verdict"))}" '
                f'title="{_e(title)}">{_e(cell_text(pair))}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    for fix, reasons in _by_fix(pairs.values()):
        out.append("<ul>" + "".join(f"<li>{_e(r)}</li>" for r in reasons)
                   + f'</ul><p class="muted">fix: {_e(fix)}</p>')
    return "".join(out)


def _by_fix(pairs) -> list[tuple[str, list[str]]]:
    """The pairs that are not ok, grouped under their fix (one fix shown once)."""
    groups: dict[str, list[str]] = {}
    for p in pairs:
        if not p.get("ok"):
            groups.setdefault(p.get("fix") or "", []).append(p.get("reason") or "")
    return list(groups.items())


def gpu_text(gpu) -> str:
    """A finding's GPU: ``GPU 0 (0000:01:00.0)`` from {index, bus_id}, a bus id or index as
    given, empty for the whole rig."""
    if isinstance(gpu, dict):
        index, bus = gpu.get("index"), gpu.get("bus_id")
        if index is not None and bus:
            return f"GPU {index} ({bus})"
        return str(bus or (f"GPU {index}" if index is not None else ""))
    return "" if gpu is None else str(gpu)


def render_html(result: VerifyResult, title: str = "rigctl verify") -> str:
    """The whole report as one HTML document (no external assets)."""
    hosts = result.hosts()
    simulated = [h for h in hosts if result.gpu_view(h) == "simulated"]
    body = [f"<h1>{_e(title)}</h1>",
            f"<p>{_e(_stamp())}; {len(hosts)} rig(s); result: "
            f"{'ok' if result.ok else 'FAILED'}{' (strict: warnings fail)' if result.strict else ''}</p>"]
    if simulated:
        body.append(f'<p class="sim">Simulated GPUs on {_e(", ".join(simulated))}: results there '
                    "come from rigctl's simulated GPU layer, not from real hardware.</p>")
    totals = result.counts(result.checks)
    body.append(_table(["rig", "gpu_view", "result", *[outcome_text(k) for k in totals]],
                       [[h, result.gpu_view(h),
                         result.host_outcome(h) or ("ok" if result.host_ok(h) else "failed"),
                         *[str(v) for v in result.counts(checks).values()]]
                        for h, checks in hosts.items()], attrs=' class="summary"'))
    for host, checks in hosts.items():
        view = result.gpu_view(host)
        profile = (result.rigs.get(host) or {}).get("profile")
        data = rig_report(result, host)
        body.append(f'<section id="rig-{_e(host)}"><h2>{_e(host)}</h2>')
        text = VIEW_TEXT.get(view, view) + (f" (profile {profile})" if profile else "")
        body.append(f'<p class="{"sim" if view == "simulated" else "view"}">gpu_view: {_e(text)}</p>')
        outcome = result.host_outcome(host)
        if outcome:
            body.append(f'<p class="o-{_e(outcome)}">{_e(outcome_text(outcome))}: '
                        f"{_e(checks[0].message)}</p></section>")
            continue
        body.append("<h3>GPUs</h3>")
        if data.get("gpus"):
            body.append(_table(GPU_COLUMNS, _gpu_rows(data["gpus"]), attrs=' class="gpus"'))
        else:
            body.append('<p class="muted">No GPU facts attached (no GPU, or the GPU checks did '
                        "not run).</p>")
        body.append("<h3>P2P matrix</h3>")
        body.append(_p2p_html(host, data.get("p2p") or {}))
        nccl = data.get("nccl") or {}
        if nccl:
            body.append("<h3>NCCL</h3>")
            body.append(_table(["setting", "value", "why"],
                               [[s.get("key"), s.get("value"), s.get("reason")]
                                for s in nccl.get("settings") or []]))
            if nccl.get("evidence"):
                body.append(f"<p>P2P setting decided by: {_e(nccl['evidence'])}</p>")
        body.append("<h3>Health findings</h3>")
        health = data.get("health") or []
        if health:
            body.append(_table(HEALTH_COLUMNS, [[f.get("check"), gpu_text(f.get("gpu")), f.get("severity"),
                                                 f.get("evidence"), f.get("fix")] for f in health],
                               [f"o-{'failed' if f.get('severity') == 'fail' else f.get('severity')}"
                                for f in health], attrs=' class="health"'))
        else:
            body.append('<p class="muted">No health findings attached.</p>')
        body.append("<h3>Checks</h3>")
        rows = _checks_rows(result, host)
        body.append(_table(CHECK_COLUMNS, [r for _, r in rows], [f"o-{o}" for o, _ in rows],
                           attrs=' class="checks"'))
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


# --- Markdown -----------------------------------------------------------------------------


def _md(value) -> str:
    return str("" if value is None else value).replace("|", "\\|").replace("\n", " ")


def _md_table(columns, rows) -> list[str]:
    lines = ["| " + " | ".join(_md(c) for c in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows]
    return lines + [""]


def render_markdown(result: VerifyResult, title: str = "rigctl verify") -> str:
    hosts = result.hosts()
    out = [f"# {title}", "", f"{_stamp()}; {len(hosts)} rig(s); result: "
           f"{'ok' if result.ok else 'FAILED'}", ""]
    for host, checks in hosts.items():
        view = result.gpu_view(host)
        profile = (result.rigs.get(host) or {}).get("profile")
        data = rig_report(result, host)
        out += [f"## {host}", ""]
        view_text = VIEW_TEXT.get(view, view) + (f" (profile {profile})" if profile else "")
        out += [f"**gpu_view: {view_text}**" if view == "simulated" else f"gpu_view: {view_text}", ""]
        outcome = result.host_outcome(host)
        if outcome:
            out += [f"{outcome_text(outcome)}: {checks[0].message}", ""]
            continue
        out += ["### GPUs", ""]
        out += _md_table(GPU_COLUMNS, _gpu_rows(data.get("gpus"))) if data.get("gpus") else [
            "No GPU facts attached.", ""]
        out += ["### P2P matrix", ""]
        p2p = data.get("p2p") or {}
        gpus, pairs = p2p_cells(p2p)
        if pairs:
            out += [p2p.get("text") or "", "", f"Evidence: {p2p.get('source')}"
                    + (" (simulated GPUs)" if p2p.get("simulated") else ""), ""]
            rows = [[f"GPU {a}"] + ["-" if a == b else (cell_text(pairs[(a, b)]) if (a, b) in pairs
                                                       else "not measured") for b in gpus]
                    for a in gpus]
            out += _md_table(["src \\ dst"] + [f"GPU {g}" for g in gpus], rows)
        else:
            out += ["No P2P measurement for this rig.", ""]
        nccl = data.get("nccl") or {}
        if nccl:
            out += ["### NCCL", ""]
            out += _md_table(["setting", "value", "why"], [[s.get("key"), s.get("value"), s.get("reason")]
                                                          for s in nccl.get("settings") or []])
        out += ["### Health findings", ""]
        health = data.get("health") or []
        out += _md_table(HEALTH_COLUMNS, [[f.get("check"), gpu_text(f.get("gpu")), f.get("severity"),
                                           f.get("evidence"), f.get("fix")] for f in health]) if health \
            else ["No health findings attached.", ""]
        out += ["### Checks", ""]
        out += _md_table(CHECK_COLUMNS, [r for _, r in _checks_rows(result, host)])
    return "\n".join(out) + "\n"


def write_report(result: VerifyResult, path: str, markdown: bool | None = None) -> str:
    """Write the report to ``path``: Markdown when ``markdown`` or the name ends in ``.md``,
    else HTML. Returns the format written."""
    md = markdown if markdown is not None else str(path).lower().endswith((".md", ".markdown"))
    text = render_markdown(result) if md else render_html(result)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return "markdown" if md else "html"
