"""Paths and facts shared by the roles, the simulated GPU layer, the lab and the suites."""

# The simulated GPU layer (lab rigs only). Its presence on a host is what makes every
# reader report the GPUs as simulated; a real rig never has these paths.
SIMGPU_DIR = "/etc/rigctl-simgpu"
SIMGPU_PROFILE = "/etc/rigctl-simgpu/profile.json"
# A sysfs-shaped tree of the simulated PCI devices: <root>/bus/pci/devices/<bdf>/{vendor,...}
SIMGPU_SYSFS_ROOT = "/var/lib/rigctl-simgpu/sys"
# Runtime state (power limits, persistence mode). Under /run, a tmpfs: lost at reboot,
# exactly like the state the real driver keeps.
SIMGPU_STATE_DIR = "/run/rigctl-simgpu"
SIMGPU_TOOL = "/usr/local/bin/rigctl-simgpu"

NVIDIA_PCI_VENDOR = "10de"

# Where rigctl keeps its own records on a managed host.
HOST_STATE_DIR = "/var/lib/rigctl"
