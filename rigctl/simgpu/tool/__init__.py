"""rigctl GPU simulator: ``nvidia-smi`` for lab rigs that have no GPU.

A package of standard-library-only modules (Python 3.9 syntax, relative imports only, no
rigctl import: it runs inside the rigs), installed as ONE runnable file, a zip archive
(zipapp, ``rigctl.simgpu.install.simulator_script``), under two names:

- ``/usr/local/bin/nvidia-smi``: answers like the real tool, in the real output formats
  (``--query-gpu`` CSV, ``-q [-d MEMORY,POWER,...]``, ``-L``, ``topo -m``, ``topo -p2p``, ``-pl``,
  ``-pm``, ``-lgc``/``-rgc``, ``-c``, the summary table), so that roles, modules and suites run unchanged;
- ``/usr/local/bin/rigctl-simgpu``: the same, plus its own commands::

      rigctl-simgpu status [--json]        what is simulated, profile, runtime state
      rigctl-simgpu persistenced start|stop|status
                                           what nvidia-persistenced does to the driver
                                           (persistence on for every GPU while running)
      rigctl-simgpu lspci                  `lspci -vv -D -nn` blocks of the simulated GPUs
                                           and of the bridges above them (ACS, switches)
      rigctl-simgpu kernel-log             the kernel log since boot, as `journalctl -k -b
                                           --no-pager -o short-iso` prints it (Xid, AER)
      rigctl-simgpu probe [...]            the rig probe's JSON Lines, modelled (simulated)
      rigctl-simgpu fault add|list|clear   faults at run time (see faults.py)
      rigctl-simgpu apps add|clear|list    compute processes (--query-compute-apps)
      rigctl-simgpu load on|off|status     the load flag the probe raises while it runs
      rigctl-simgpu reset                  drop the runtime state (= a reboot)
      rigctl-simgpu <nvidia-smi arguments> same as nvidia-smi

The simulated GPUs never pass for real hardware: readers decide "simulated" from the marker
file (the profile, ``/etc/rigctl-simgpu/profile.json``), not from this output; the output
keeps the real tool's layout and real model names so that the parsers are exercised.

Runtime state (power limits, persistence mode, locked clocks, compute mode, run-time
faults, compute processes, the load flag) lives in
``/run/rigctl-simgpu/state.json``: /run is a tmpfs, so like with the real driver everything
set with ``-pl``/``-pm``/``-lgc``/``-c`` is gone after a container restart unless something
re-applies it. As a second guard the state
records the start time of PID 1 and is ignored when PID 1 changed (a restart with a
non-tmpfs /run). Writes are atomic (temp file + rename) under an fcntl lock, because
Ansible may run several calls at once.

Environment (tests and debugging):

- ``RIGCTL_SIMGPU_PROFILE``    profile JSON to use instead of /etc/rigctl-simgpu/profile.json
- ``RIGCTL_SIMGPU_STATE_DIR``  state directory instead of /run/rigctl-simgpu
- ``RIGCTL_SIMGPU_SYSFS_ROOT`` simulated sysfs tree (AER counters rewritten by ``fault``)
- ``RIGCTL_SIMGPU_PROBE_SECONDS`` how long ``probe`` runs (default: modelled, <= 20 s)
- ``RIGCTL_SIMGPU_ASSUME_ROOT=1`` act as root for ``-pl``/``-pm``/``-lgc``/``-rgc``/``-c``/``persistenced``;
  ``=0`` act as an unprivileged user even when run as root (the real tool refuses those
  changes to non-root users with "Insufficient Permissions", exit 4; so does this one)

Real-tool wording used here (seen in public outputs of the real nvidia-smi): ``Power limit
for GPU <bus> was set to X W from Y W.``, ``Provided power limit X W is not a valid power
limit which should be between MIN W and MAX W for GPU <bus>``, ``Failed to set power
management limit for GPU <bus>: Insufficient Permissions``, ``Terminating early due to
previous errors.``, ``Enabled persistence mode for GPU <bus>.``, ``Persistence mode is
already Enabled for GPU <bus>.``, ``Unable to set persistence mode for GPU <bus>:
Insufficient Permissions``, ``Field "x" is not a valid field to query.``, ``All done.``.
``Compute mode is already set to DEFAULT for GPU <bus>.``, ``Set compute mode to
EXCLUSIVE_PROCESS for GPU <bus>.``, ``GPU clocks set to "(gpcClkMin 210, gpcClkMax 1695)"
for GPU <bus>``, ``All done.``. Approximated (wording not confirmed against a real driver):
the refusal of a clock lock outside the card's range, the ``-rgc`` confirmation and the
permission errors of ``-lgc``/``-rgc``/``-c``.
Exit codes follow nvidia-smi(1): 2 invalid argument, 4 no permission, 6 not found.

Deliberate simplifications: the current PCIe link is the profile's ``link_gen_current``
(what the link trains at under load; real idle GPUs drop to Gen1); power draw, clocks and
temperatures are idle values unless the load flag is up (telemetry.py); ``-d PCI`` is
refused because the real tool has no
such display type (the full ``-q`` has the PCI section); ``topo -p2p a`` answers like
``r``/``w``. Anything else not listed above is refused on stderr, exit 2.
"""

from .common import PROFILE_PATH, STATE_DIR, SYSFS_ROOT, TOOL_PATH

__all__ = ["PROFILE_PATH", "STATE_DIR", "SYSFS_ROOT", "TOOL_PATH"]
