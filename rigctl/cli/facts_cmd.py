"""`rigctl facts`: what each rig is, gathered over SSH (read only)."""

from __future__ import annotations

import json
import sys

import click

from rigctl.cli import _run
from rigctl.cli.common import run_options


def _fmt_link(link: dict) -> str:
    if not link or link.get("gen_current") is None:
        return "-"
    cur = f"Gen{link['gen_current']} x{link.get('width_current') or '?'}"
    top = f"Gen{link.get('gen_max') or '?'} x{link.get('width_max') or '?'}"
    return cur if cur == top else f"{cur} (max {top})"


def _fmt_driver(drv: dict) -> str:
    loaded = drv.get("loaded")
    parts = []
    if loaded and loaded.get("version"):
        parts.append(f"loaded {loaded['version']} ({loaded.get('flavor')})")
    else:
        parts.append("no driver loaded")
    for kernel, mod in sorted((drv.get("modules") or {}).items()):
        if mod.get("version"):
            parts.append(
                f"{kernel}: {mod.get('module') or 'nvidia'} {mod['version']} "
                f"{mod.get('flavor') or ''} [{mod.get('filename')}]"
            )
    if drv.get("userspace_versions"):
        parts.append("userspace " + ", ".join(drv["userspace_versions"]))
    return "; ".join(parts)


def fmt_reboot(reboot: dict | None) -> str:
    """The rig's pending reboot (rigctl.core.reboot) in one line."""
    if not reboot:
        return "unknown"
    if not reboot.get("required"):
        return "not needed"
    since = f" (since {reboot['since']})" if reboot.get("since") else ""
    return "NEEDED" + since + ": " + "; ".join(reboot.get("reasons") or ["no reason recorded"])


def summary_rows(facts: dict) -> list[tuple[str, str]]:
    osr = facts["os"]
    kern = facts["kernel"]
    iommu = facts["iommu"]
    view = facts["gpu_view"]
    sim = facts.get("simulation") or {}
    gpu_label = {
        "simulated": f"SIMULATED ({len(facts['gpus'])} GPUs, lab profile {sim.get('profile')})"
        " - not real hardware",
        "real": f"real ({len(facts['gpus'])} GPUs)",
        "none": "no NVIDIA GPU on PCI",
    }[view]
    flags = " ".join(
        k if v is True else f"{k}={v}" for k, v in sorted(iommu.get("cmdline", {}).items())
    )
    return [
        ("os", f"{osr['pretty_name'] or osr['id'] + ' ' + osr['version_id']} ({facts['arch']})"),
        ("kernel", kern["running"] + ("" if kern["running_has_headers"] else " (no headers)")),
        ("kernels with headers", ", ".join(kern["with_headers"]) or "none"),
        ("secure boot", f"{facts['secure_boot']['state']} ({facts['secure_boot']['source']})"),
        (
            "iommu",
            f"{iommu['mode']}{' SIMULATED (lab profile)' if iommu.get('simulated') else ''} "
            f"({iommu['groups']} groups){' cmdline: ' + flags if flags else ''}",
        ),
        ("cpu", facts.get("cpu_vendor") or "unknown"),
        ("container", facts.get("container") or "no"),
        ("gpus", gpu_label),
        ("nvidia driver", _fmt_driver(facts["driver"])),
        ("reboot", fmt_reboot(facts.get("reboot"))),
    ]


def gpu_rows(facts: dict) -> list[list[str]]:
    rows = []
    for gpu in facts["gpus"]:  # rigctl.core.gpumodel.build's shape
        power = (gpu.get("power") or {}).get("current_w")
        vram = gpu.get("vram_mib") if gpu.get("vram_source") == "nvidia-smi" else None
        rows.append(
            [
                str(gpu["index"]),
                gpu["bus_id"],
                gpu.get("name") or "?",
                gpu.get("generation") or "?",
                _fmt_link(gpu.get("link")),
                str(gpu.get("numa_node") if gpu.get("numa_node") is not None else "-"),
                f"{vram} MiB" if vram else "-",
                f"{power} W" if power is not None else "-",
                "simulated" if gpu.get("simulated") else "real",
            ]
        )
    return rows


GPU_COLUMNS = ["#", "bus id", "name", "arch", "link", "numa", "vram", "power limit", "view"]


def render(all_facts: dict[str, dict]) -> None:
    tty = sys.stdout.isatty()
    if tty:
        from rich.console import Console
        from rich.table import Table

        console = Console()
    for host, facts in all_facts.items():
        if tty:
            table = Table(title=f"rig {host}", title_justify="left", show_header=False)
            table.add_column("fact", style="bold")
            table.add_column("value")
            for key, value in summary_rows(facts):
                style = "bold yellow" if (
                    (key == "gpus" and facts["gpu_view"] == "simulated")
                    or (key == "reboot" and value.startswith("NEEDED"))
                ) else ""
                table.add_row(key, f"[{style}]{value}[/]" if style else value)
            console.print(table)
            if facts["gpus"]:
                gtable = Table(show_header=True)
                for col in GPU_COLUMNS:
                    gtable.add_column(col)
                for row in gpu_rows(facts):
                    gtable.add_row(*row)
                console.print(gtable)
        else:
            click.echo(f"== rig {host}")
            for key, value in summary_rows(facts):
                click.echo(f"  {key:<22} {value}")
            rows = gpu_rows(facts)
            if rows:
                widths = [
                    max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(GPU_COLUMNS)
                ]
                click.echo("  " + "  ".join(c.ljust(w) for c, w in zip(GPU_COLUMNS, widths, strict=True)))
                for row in rows:
                    click.echo("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
            click.echo("")


@click.command()
@click.argument("hosts", nargs=-1)
@run_options
@click.pass_context
def facts(ctx, hosts, inventory, limit, check, diff, verbose, as_json):
    """Gather and show the facts of HOSTS (default: every rig), over SSH, read only.

    OS, kernels and headers, Secure Boot, kernel command line and IOMMU mode, NVIDIA
    GPUs on PCI with their links, the NVIDIA driver and which module file each kernel
    loads. GPUs of lab rigs are shown as SIMULATED.
    """
    paths, _inv, selected = _run.select_hosts(inventory, hosts, limit)
    result = _run.run(
        "facts.yml",
        paths,
        selected,
        check=check,
        diff=diff,
        verbose=verbose,
        as_json=False,
        title="facts",
        kind="facts",
        quiet=as_json,
        summary=False,
        inv=_inv,
    )
    gathered = {
        h: result.host_facts[h]["rig_host"] for h in selected if "rig_host" in result.host_facts.get(h, {})
    }
    if as_json:
        payload = {"ok": result.ok, "hosts": gathered, "run": result.as_dict()}
        click.echo(json.dumps(payload, indent=2, sort_keys=True))
    else:
        render(gathered)
        if not result.ok:
            from rigctl.progress import print_summary

            print_summary(result, "facts")
    ctx.exit(_run.exit_code(result))
