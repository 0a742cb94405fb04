"""The command lines: ``nvidia-smi ...`` and ``rigctl-simgpu ...`` (which also answers every
nvidia-smi command line). Each command's module is imported only when it runs."""

import os
import sys

from .common import RC_INVALID_ARGUMENT, RC_OK, SimError, invalid_args, not_simulated
from .profile import read_profile
from .state import is_root, load_state, update_state

TOOL_USAGE = """usage: rigctl-simgpu status [--json]
       rigctl-simgpu persistenced start|stop|status
       rigctl-simgpu lspci
       rigctl-simgpu kernel-log              the kernel log since boot (journalctl -k -b -o short-iso)
       rigctl-simgpu probe [--size-mib N] [--iterations N] [--no-p2p] [--pairs I:J,...]
       rigctl-simgpu fault add KIND --FIELD VALUE ... | list [--json] | clear [ID|all]
       rigctl-simgpu apps add --gpu ID --pid N [--name NAME] [--used-mib N] | clear | list
       rigctl-simgpu load on [--seconds N] | off | status
       rigctl-simgpu reset
       rigctl-simgpu <nvidia-smi arguments>

The rigctl GPU simulator: the GPUs of this host are simulated (lab rig).
"""

NVIDIA_SMI_HELP = """NVIDIA System Management Interface -- rigctl GPU simulator (lab rig, simulated GPUs)

Simulated:
    nvidia-smi                                   summary table
    nvidia-smi -L                                list GPUs
    nvidia-smi --query-gpu=FIELDS --format=csv[,noheader][,nounits] [-i ID]
    nvidia-smi --query-compute-apps=FIELDS --format=csv[,noheader][,nounits] [-i ID]
    nvidia-smi -q [-d MEMORY,POWER,TEMPERATURE,CLOCK,UTILIZATION,COMPUTE,PERFORMANCE] [-i ID]
    nvidia-smi -pl WATTS [-i ID]                 (root)
    nvidia-smi -pm 0|1 [-i ID]                   (root)
    nvidia-smi -lgc MIN,MAX [-i ID]              (root) lock the core clocks (MHz)
    nvidia-smi -rgc [-i ID]                      (root) unlock them
    nvidia-smi -c 0|2|3|DEFAULT|PROHIBITED|EXCLUSIVE_PROCESS [-i ID]   (root)
    nvidia-smi topo -m
    nvidia-smi topo -p2p r|w|rw|n|a
    nvidia-smi nvlink -s [-i ID]
    nvidia-smi --version
ID: index, PCI bus id or UUID, comma-separated.
"""

# option -> (key in the parsed options, takes a value)
_OPTIONS = {
    "--query-gpu": ("query_gpu", True),
    "--query-compute-apps": ("query_apps", True),
    "--format": ("format", True),
    "-i": ("id", True), "--id": ("id", True),
    "-q": ("q", False), "--query": ("q", False), "-a": ("q", False),
    "-d": ("display", True), "--display": ("display", True),
    "-pl": ("pl", True), "--power-limit": ("pl", True),
    "-pm": ("pm", True), "--persistence-mode": ("pm", True),
    "-lgc": ("lgc", True), "--lock-gpu-clocks": ("lgc", True),
    "-rgc": ("rgc", False), "--reset-gpu-clocks": ("rgc", False),
    "-c": ("c", True), "--compute-mode": ("c", True),
    "-L": ("L", False), "--list-gpus": ("L", False),
    "--version": ("version", False),
}
_ACTIONS = ("query_gpu", "query_apps", "q", "pl", "pm", "lgc", "rgc", "c", "L", "version")


def _topo(argv):
    from .topo import cmd_topo_matrix, cmd_topo_p2p

    profile = read_profile()
    rest = argv[1:]
    if rest in (["-m"], ["--matrix"]):
        return cmd_topo_matrix(profile, load_state())
    if len(rest) == 2 and rest[0] in ("-p2p", "--p2pstatus"):
        return cmd_topo_p2p(profile, load_state(), rest[1])
    if len(rest) == 1 and rest[0].startswith("--p2pstatus="):
        return cmd_topo_p2p(profile, load_state(), rest[0].split("=", 1)[1])
    raise not_simulated("topo %s" % " ".join(rest), profile)


def parse_options(argv):
    """nvidia-smi's flat options -> dict (None for -h/--help)."""
    opts = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
            has_value = True
        else:
            name, value, has_value = arg, None, False
        if name in ("-h", "--help"):
            return None
        if name not in _OPTIONS:
            profile = None
            try:
                profile = read_profile()
            except SimError:
                pass
            raise not_simulated("option %r" % arg, profile)
        key, takes_value = _OPTIONS[name]
        if takes_value and not has_value:
            i += 1
            if i >= len(argv):
                raise invalid_args()
            value = argv[i]
        opts[key] = value if takes_value else True
        i += 1
    return opts


def _check_combination(opts):
    if len([k for k in _ACTIONS if k in opts]) > 1:
        raise invalid_args()
    if "display" in opts and "q" not in opts:
        raise invalid_args()
    if "format" in opts and "query_gpu" not in opts and "query_apps" not in opts:
        raise invalid_args()


def _dispatch(profile, state, opts):
    gpu_ids = opts.get("id")
    if "query_gpu" in opts:
        from .query import cmd_query_gpu
        return cmd_query_gpu(profile, state, opts["query_gpu"], opts.get("format"), gpu_ids)
    if "query_apps" in opts:
        from .apps import cmd_query_compute_apps
        return cmd_query_compute_apps(profile, state, opts["query_apps"], opts.get("format"), gpu_ids)
    if "q" in opts:
        from .qtree import cmd_q
        return cmd_q(profile, state, gpu_ids, opts.get("display"))
    from . import settings, table
    if "pl" in opts:
        return settings.cmd_power_limit(profile, opts["pl"], gpu_ids)
    if "pm" in opts:
        return settings.cmd_persistence(profile, opts["pm"], gpu_ids)
    if "lgc" in opts:
        return settings.cmd_lock_clocks(profile, opts["lgc"], gpu_ids)
    if "rgc" in opts:
        return settings.cmd_reset_clocks(profile, gpu_ids)
    if "c" in opts:
        return settings.cmd_compute_mode(profile, opts["c"], gpu_ids)
    if "L" in opts:
        return table.cmd_list(profile, gpu_ids)
    if "version" in opts:
        return table.cmd_version(profile)
    return table.cmd_summary(profile, state, gpu_ids)


def run_nvidia_smi(argv):
    if argv and argv[0] == "topo":
        return _topo(argv)
    if argv and argv[0] == "nvlink":
        from .topo import cmd_nvlink
        return cmd_nvlink(read_profile(), load_state(), argv[1:])
    opts = parse_options(argv)
    if opts is None:
        return NVIDIA_SMI_HELP
    profile = read_profile()
    _check_combination(opts)
    return _dispatch(profile, load_state(), opts)


def _on_fault_change(profile, state):
    from .sysfs import rewrite_aer
    rewrite_aer(profile, state)


def run_tool(argv):
    """rigctl-simgpu's commands; anything else is an nvidia-smi command line. Returns the
    output text, or an int exit code when the command wrote its output itself (probe)."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        return TOOL_USAGE
    command, args = argv[0], argv[1:]
    from . import commands
    if command == "status":
        if args not in ([], ["--json"]):
            raise SimError(RC_INVALID_ARGUMENT, stderr=TOOL_USAGE)
        return commands.cmd_status(read_profile(), load_state(), args == ["--json"])
    if command == "persistenced":
        if len(args) != 1:
            raise SimError(RC_INVALID_ARGUMENT, stderr=TOOL_USAGE)
        return commands.cmd_persistenced(read_profile(), args[0])
    if command == "reset":
        try:
            profile = read_profile()
        except SimError:
            profile = None
        return commands.cmd_reset(profile)
    if command == "load":
        return commands.cmd_load(args)
    return _run_fault_tools(command, args)


def _run_fault_tools(command, args):
    if command == "lspci":
        from .lspci import cmd_lspci
        return cmd_lspci(read_profile())
    if command == "kernel-log":
        from .kernlog import cmd_kernel_log
        if args:
            raise SimError(RC_INVALID_ARGUMENT, stderr=TOOL_USAGE)
        return cmd_kernel_log(read_profile(), load_state())
    if command == "probe":
        from .probe import cmd_probe
        return cmd_probe(read_profile(), args)
    if command == "fault":
        from .faults import cmd_fault
        return cmd_fault(read_profile(), args, is_root, update_state, load_state, _on_fault_change)
    if command == "apps":
        from .apps import cmd_apps
        return cmd_apps(read_profile(), args, is_root, update_state, load_state)
    if command == "nvidia-smi":
        return run_nvidia_smi(args)
    return run_nvidia_smi([command] + args)


def main(argv=None, prog=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = os.path.basename(prog or sys.argv[0])
    try:
        if prog.startswith("rigctl-simgpu"):
            output = run_tool(argv)
        else:
            output = run_nvidia_smi(argv)
    except SimError as exc:
        if exc.stdout:
            sys.stdout.write(exc.stdout)
        if exc.stderr:
            sys.stderr.write(exc.stderr)
        sys.stdout.flush()
        return exc.rc
    if isinstance(output, int):
        return output
    sys.stdout.write(output)
    sys.stdout.flush()
    return RC_OK
