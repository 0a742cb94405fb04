"""The `rigctl` command line.

Subcommands are loaded lazily (only the one being run is imported), so `rigctl --help`
stays fast and never imports Ansible.
"""

from __future__ import annotations

import importlib
import sys

import click

from rigctl import __version__
from rigctl.errors import EXIT_USAGE, RigctlError

# name -> (module, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "inventory": ("rigctl.cli.inventory_cmd", "inventory", "Check and show inventories."),
    "facts": ("rigctl.cli.facts_cmd", "facts", "Gather rig facts over SSH."),
    "provision": ("rigctl.cli.provision_cmd", "provision", "Provision rigs."),
    "verify": ("rigctl.cli.verify_cmd", "verify", "Verify rigs with the testinfra suites."),
    "lab": ("rigctl.cli.lab_cmd", "lab", "Simulated rigs (systemd containers) to try rigctl."),
    "p2p": ("rigctl.cli.p2p_cmd", "p2p", "Patched P2P sources: pin a fork branch, list them."),
    "fleet": ("rigctl.cli.fleet_cmd", "fleet", "The whole fleet at a glance (status)."),
    "pull": ("rigctl.cli.pull_cmd", "pull", "Pull mode: rigs converge themselves (ansible-pull)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, cmd_name):
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module = importlib.import_module(spec[0])
        return getattr(module, spec[1])

    def format_commands(self, ctx, formatter):
        # Help text without importing every command module.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rigctl")
def cli():
    """rigctl: turn hosts with consumer NVIDIA GPUs into verified multi-GPU rigs.

    Exit codes: 0 success, 1 a host or a check failed, 2 usage or input error
    (nothing was contacted).
    """


def main(argv: list[str] | None = None) -> None:
    try:
        rc = cli.main(args=argv, standalone_mode=False)
    except RigctlError as exc:
        click.echo(f"error: {exc.render()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if exc.exit_code in (1, 2) else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)
