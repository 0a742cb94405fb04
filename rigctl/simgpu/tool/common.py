"""Paths, exit codes and the error type shared by every part of the simulator."""

# Keep in sync with rigctl/core/constants.py (the simulator cannot import rigctl; a unit test
# checks that the values agree).
PROFILE_PATH = "/etc/rigctl-simgpu/profile.json"
STATE_DIR = "/run/rigctl-simgpu"
SYSFS_ROOT = "/var/lib/rigctl-simgpu/sys"
TOOL_PATH = "/usr/local/bin/rigctl-simgpu"

ENV_PROFILE = "RIGCTL_SIMGPU_PROFILE"
ENV_STATE_DIR = "RIGCTL_SIMGPU_STATE_DIR"
ENV_SYSFS_ROOT = "RIGCTL_SIMGPU_SYSFS_ROOT"
ENV_ASSUME_ROOT = "RIGCTL_SIMGPU_ASSUME_ROOT"
ENV_PROBE_SECONDS = "RIGCTL_SIMGPU_PROBE_SECONDS"

STATE_FILE = "state.json"
LOCK_FILE = ".lock"

# nvidia-smi(1) return codes
RC_OK = 0
RC_INVALID_ARGUMENT = 2
RC_NOT_SUPPORTED = 3
RC_NO_PERMISSION = 4
RC_NOT_FOUND = 6
RC_DRIVER = 9

ANSI_UNDERLINE = "\x1b[4m"
ANSI_RESET = "\x1b[0m"


class SimError(Exception):
    """An answer that ends the command: text for stdout/stderr and an exit code."""

    def __init__(self, rc, stdout="", stderr=""):
        super().__init__(stderr or stdout)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr


def not_simulated(what, profile=None):
    name = (profile or {}).get("name") or "?"
    return SimError(
        RC_INVALID_ARGUMENT,
        stderr=(
            "rigctl GPU simulator: %s is not simulated. This host has simulated GPUs "
            "(profile %s; see `rigctl-simgpu status`); the simulator answers --query-gpu, "
            "--query-compute-apps, -q [-d MEMORY,POWER,...], -L, -pl, -pm, topo -m, topo -p2p, "
            "nvlink -s and the summary table.\n" % (what, name)
        ),
    )


def invalid_args():
    return SimError(
        RC_INVALID_ARGUMENT,
        stdout="Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n",
    )


def usage_error(text):
    """A rigctl-simgpu command used wrongly: the message on stderr, exit 2."""
    return SimError(RC_INVALID_ARGUMENT, stderr="rigctl-simgpu: %s\n" % text)


def w(value):
    """Watts as nvidia-smi prints them (two decimals)."""
    return "%.2f" % float(value)
