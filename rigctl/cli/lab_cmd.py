"""`rigctl lab ...`: simulated rigs (systemd containers over SSH) to try rigctl on."""

from __future__ import annotations

import json
import os
import sys

import click

from rigctl.cli.common import json_option

NAME_ENV = "RIGCTL_LAB_NAME"


def name_option(f):
    return click.option(
        "--name",
        default="default",
        envvar=NAME_ENV,
        show_default=True,
        help=f"Lab name (lowercase letters, digits, '-'). Env: ${NAME_ENV}.",
    )(f)


def _hint_name(name: str) -> str:
    return "" if name == "default" else f" --name {name}"


@click.group()
def lab():
    """Simulated rigs on this machine: systemd containers reached over SSH.

    Each rig is a Debian container with sshd on 127.0.0.1 only, a lab key, its own host
    key (checked: no trust on first use) and a simulated GPU layer. `lab up` writes an
    Ansible inventory to use with every other rigctl command.
    """


@lab.command("up")
@name_option
@click.option(
    "--rigs", type=int, default=None, help="Number of rigs (1-32). Default: 1, or as many as the lab has."
)
@click.option(
    "--profile", default=None, help="Simulated GPU profile of every rig (default 4x3090; see `lab profiles`)."
)
@click.option(
    "--profiles",
    "profile_list",
    default=None,
    metavar="P1,P2,..",
    help="One profile per rig, comma separated.",
)
@click.option(
    "--release",
    type=click.Choice(["bookworm", "trixie"]),
    default=None,
    help="Debian release of the rigs (default trixie, Debian 13; bookworm is Debian 12).",
)
@click.option(
    "--mirror",
    default=None,
    metavar="URL",
    help="Debian mirror for the image build and the rigs' apt sources. "
    "Env: $RIGCTL_LAB_MIRROR; default http://deb.debian.org/debian.",
)
@click.option(
    "--mirror-dir",
    default=None,
    metavar="DIR",
    help="A directory on this machine (e.g. a local apt repository) that every rig serves "
    "itself read-only at http://127.0.0.1:8600/ (the rig's own loopback; back after a "
    "reboot). Fixed when the lab is created.",
)
@click.option(
    "--port-base",
    type=int,
    default=22201,
    show_default=True,
    help="First port tried for the rigs' sshd on 127.0.0.1.",
)
@click.option(
    "--timeout",
    type=float,
    default=180,
    show_default=True,
    help="Seconds to wait for the rigs to boot and accept SSH.",
)
@json_option
def up(name, rigs, profile, profile_list, release, mirror, mirror_dir, port_base, timeout, as_json):
    """Start (or repair, or grow) a lab and write its inventory."""
    from rigctl.lab import LAB_MIRROR_URL, lab_up

    plist = [p for p in profile_list.split(",") if p.strip()] if profile_list else None
    lab_ = lab_up(
        name,
        rigs=rigs,
        profile=profile,
        profiles_per_rig=plist,
        release=release,
        mirror=mirror,
        mirror_dir=mirror_dir,
        port_base=port_base,
        timeout=timeout,
    )
    if as_json:
        click.echo(json.dumps(lab_.to_json(), indent=2))
        return
    for r in lab_.rigs:
        click.echo(f"{r.name}  127.0.0.1:{r.port}  {r.profile} ({r.gpu_count} GPUs)")
    click.echo(f"inventory: {lab_.inventory}")
    if lab_.mirror_dir:
        click.echo(f"mirror: {lab_.mirror_dir} at {LAB_MIRROR_URL} inside each rig")
    first = lab_.rigs[0].name
    click.echo(f"next: rigctl provision host {first} -i {lab_.inventory}")
    click.echo(f"      rigctl lab ssh {first}{_hint_name(name)}")


@lab.command("down")
@name_option
@click.option(
    "--purge-image",
    is_flag=True,
    help="Also remove the lab image (shared by labs; rebuilt by the next `lab up`).",
)
@json_option
def down(name, purge_image, as_json):
    """Remove every container, network, key and file of a lab (and nothing else)."""
    from rigctl.lab import lab_down

    removed = lab_down(name, purge_image=purge_image)
    if as_json:
        click.echo(json.dumps(removed, indent=2))


def _status_table(st: dict) -> None:
    headers = ["rig", "container", "port", "profile", "systemd", "ssh"]
    mirror = st.get("mirror_dir")
    if mirror:
        headers.append("mirror")
    rows = []
    for r in st["rigs"]:
        sysd = r["systemd"] or "-"
        if r["failed_units"]:
            sysd += " (failed: " + ", ".join(r["failed_units"]) + ")"
        rows.append([r["rig"], r["state"], str(r["port"]), r["profile"], sysd, "ok" if r["ssh"] else "no"])
        if mirror:
            rows[-1].append(r.get("mirror") or "-")
    footer = [f"inventory: {st['inventory']}"]
    if mirror:
        footer.append(f"mirror: {mirror} at {st['mirror_url']} inside each rig")
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"lab {st['name']} ({st['image']})")
        for h in headers:
            table.add_column(h)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        for line in footer:
            Console().print(line, highlight=False)
        return
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for line in footer:
        click.echo(line)


@lab.command("inventory")
@name_option
def inventory_cmd(name):
    """Print the path of the lab's Ansible inventory (for -i).

    Example: rigctl facts -i "$(rigctl lab inventory)"
    """
    from rigctl.lab import inventory_path

    path = inventory_path(name)
    if not path.is_file():
        from rigctl.errors import InputError

        raise InputError(
            f"lab {name!r} has no inventory at {path}",
            fix=f"bring it up first: rigctl lab up{_hint_name(name)}",
        )
    click.echo(str(path))


@lab.command("status")
@name_option
@json_option
def status(name, as_json):
    """Each rig: container state, port, profile, systemd state, SSH reachable (and the
    mirror unit's state when the lab serves a --mirror-dir).

    Exit 1 when a rig is not running, not reachable over SSH, or not serving its mirror.
    """
    from rigctl.lab import lab_status

    st = lab_status(name)
    if as_json:
        click.echo(json.dumps(st, indent=2))
    else:
        _status_table(st)
    healthy = all(
        r["state"] == "running" and r["ssh"] and r.get("mirror") in (None, "active") for r in st["rigs"]
    )
    sys.exit(0 if healthy else 1)


@lab.command("ssh", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@name_option
@click.argument("rig")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh(name, rig, command):
    """SSH into a rig (lab key, host key checked): `rigctl lab ssh lab-rig-1 -- CMD...`."""
    from rigctl.lab import ssh_argv

    if command and command[0] == "--":
        command = command[1:]
    argv = ssh_argv(name, rig, list(command))
    sys.stdout.flush()
    os.execv(argv[0], argv)


@lab.command("restart")
@name_option
@click.argument("rig")
@click.option("--timeout", type=float, default=180, show_default=True)
def restart(name, rig, timeout):
    """Restart a rig (like a reboot: /run is wiped) and wait until it is back."""
    from rigctl.lab import lab_restart

    state, failed = lab_restart(name, rig, timeout=timeout)
    msg = f"{rig}: back, systemd {state}"
    if failed:
        msg += " (failed: " + ", ".join(failed) + ")"
    click.echo(msg)


@lab.command("list")
@json_option
def list_(as_json):
    """Labs on this machine."""
    from rigctl.lab import list_labs

    labs = list_labs()
    if as_json:
        click.echo(json.dumps(labs, indent=2))
        return
    if not labs:
        click.echo("no labs (start one with `rigctl lab up`)")
    for entry in labs:
        line = (
            f"{entry['name']}  rigs={entry['rigs']}  running={entry['running']}  {entry['inventory'] or '-'}"
        )
        if entry.get("mirror_dir"):
            line += f"  mirror={entry['mirror_dir']}"
        click.echo(line)


@lab.command("image")
@click.option("--release", type=click.Choice(["bookworm", "trixie"]), default="trixie", show_default=True)
@click.option("--mirror", default=None, metavar="URL", help="Debian mirror (env $RIGCTL_LAB_MIRROR).")
def image_(release, mirror):
    """Build the lab image now (needs root), or print its tag when it exists."""
    from rigctl.lab import image
    from rigctl.lab.model import check_mirror, default_mirror

    mirror = check_mirror(mirror or default_mirror())
    click.echo(image.ensure_image(release, mirror, log=lambda m: click.echo(m, err=True)))


@lab.command("profiles")
def profiles_():
    """Simulated GPU profiles a rig can have."""
    from rigctl.lab import profiles

    for p in profiles.known_profiles():
        click.echo(f"{p}  ({profiles.gpu_count(p)} GPUs)")
