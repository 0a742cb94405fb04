"""The rig variables: their ONE definition.

Every variable a rigctl role reads from the inventory is named ``rig_*`` and defined here:
type, default, allowed values, what it means for a rig owner, and which roles read it.
From this module come:

- the inventory check (``rigctl inventory check``, rigctl/inventory/validate.py),
- the roles' ``meta/argument_specs.yml``
  (``python -m rigctl.inventory.schema --write-argspecs roles``),
- the inventory reference ``docs/inventory.md``
  (``python -m rigctl.inventory.schema --write-docs docs/inventory.md``).

``--check-argspecs ROLES_DIR`` and ``--check-docs FILE`` exit 1 when the generated files
differ from what this module would write (the unit tests run both).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rigctl.core import cuda as cudalib
from rigctl.core import driver as driverlib
from rigctl.core import gpudb
from rigctl.inventory.catalog import P2P_CATALOG

# The roles that read rig variables, with the one-line description used in their
# argument specs. Roles not created yet are listed so the schema can say who reads what.
ROLES: dict[str, str] = {
    "rig_facts": "Gather the facts every other rigctl role needs, in one round trip.",
    "rig_preflight": "Refuse hosts that cannot be provisioned before anything changes.",
    "rig_hw_checks": "Check the hardware P2P depends on (Resizable BAR, IOMMU, ACS, PCIe links, "
    "chipset GPUs, GPU generations) before any driver change; optionally set the IOMMU "
    "kernel options.",
    "nvidia_driver": "Install the NVIDIA driver with open kernel modules, stock or patched "
    "for P2P, at exactly the version asked for.",
    "gpu_tuning": "Persistence mode through nvidia-persistenced; power limits, clock locks and "
    "compute mode applied now and at every boot.",
    "cuda": "The CUDA toolkit at pinned versions (side by side, one default), its environment "
    "for login shells and services, and the rig probe compiled with nvcc.",
    "nccl": "NCCL (runtime and headers) at a pinned version, and /etc/nccl.conf written from "
    "the rig's P2P state.",
}

TARGET_GROUP = "rigs"

# Value types. "scalar" (a string, number or boolean) only appears inside a dict.
TYPES = ("str", "int", "float", "bool", "list", "dict", "scalar")

DRIVER_VERSION_RE = r"^\d{3}\.\d{1,3}(\.\d{1,3})?$"
CUDA_VERSION_RE = r"^\d{2}\.\d{1,2}$"
NCCL_VERSION_RE = r"^2\.\d+\.\d+(-\d+)?$"
COMMIT_RE = r"^[0-9a-f]{40}$"
APT_URL_RE = r"^(https?|file)://\S+$"
NCCL_ENV_KEY_RE = r"^NCCL_[A-Z0-9_]+$"
IFNAME_RE = r"^[=^]?[A-Za-z0-9_.:@-]+(,[=^]?[A-Za-z0-9_.:@-]+)*$"
LAB_PROFILE_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

POWER_MIN_W = 100
POWER_MAX_W = 800
# Sanity bounds of a GPU core clock lock (each card's own maximum is checked on the host).
CLOCK_MIN_MHZ = 100
CLOCK_MAX_MHZ = 4000
# rig_compute_mode values: the names of gpudb.COMPUTE_MODES (which also holds what nvidia-smi
# -c takes and --query-gpu prints for each).
COMPUTE_MODES = tuple(gpudb.COMPUTE_MODES)
MAX_GPUS = 16

# The lowest driver each CUDA major release runs on (NVIDIA's CUDA release notes,
# "minor version compatibility"): older drivers cannot run that CUDA at all.
CUDA_MIN_DRIVER: dict[int, str] = dict(cudalib.MINOR_COMPAT_DRIVER)
# The open kernel modules exist from this driver branch on.
OPEN_MODULE_MIN_DRIVER = "515.43.04"


# --- value formats that a regex does not say well -----------------------------------

# GPU selectors (the keys of the per-GPU override dicts): gpudb.parse_gpu_selector, the
# parser the GPU facts on the host match them with.


def _clock_lock_options() -> tuple:
    return (
        Field("min", "int", "Lowest core clock in MHz.", min=CLOCK_MIN_MHZ, max=CLOCK_MAX_MHZ),
        Field("max", "int", "Highest core clock in MHz.", min=CLOCK_MIN_MHZ, max=CLOCK_MAX_MHZ),
    )


def clock_lock_problem(value: Any) -> tuple[str, str] | None:
    """A clock lock needs both min and max, min <= max (types and bounds: the options)."""
    if not isinstance(value, dict):
        return None
    missing = [k for k in ("min", "max") if k not in value]
    if missing:
        return (f"a clock lock needs min and max (missing: {', '.join(missing)})",
                "write it like {min: 210, max: 1695}")
    low, high = value["min"], value["max"]
    if (isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool)
            and not isinstance(high, bool) and low > high):
        return (f"min {low} MHz is above max {high} MHz",
                f"swap them: {{min: {high}, max: {low}}}")
    return None


def git_url_problem(value: Any) -> tuple[str, str] | None:
    """(message, fix) when ``value`` is not a git URL or path rigctl can clone."""
    if not isinstance(value, str):
        return None
    if re.match(r"^(https?|ssh|git|file)://[^\s]+$", value):
        return None
    if re.match(r"^[\w.-]+@[\w.-]+:[^\s]+$", value):  # scp-like: git@github.com:owner/repo
        return None
    if re.match(r"^(/|\./|\.\./|~/)[^\s]*$", value):
        return None
    return (
        f"{value!r} is not a git URL or path",
        "use https://host/owner/repo.git, ssh://..., git@host:owner/repo.git, file:///path "
        "or an absolute path",
    )


def driver_version_problem(value: Any) -> tuple[str, str] | None:
    """(message, fix) for a well-formed driver version that has no open kernel modules."""
    if not isinstance(value, str) or not re.match(DRIVER_VERSION_RE, value):
        return None
    if driverlib.version_tuple(value) < driverlib.version_tuple(OPEN_MODULE_MIN_DRIVER):
        return (
            f"driver {value} has no open kernel modules (they start with "
            f"{OPEN_MODULE_MIN_DRIVER})",
            "use a newer driver (RTX 5090s need 570 or newer)",
        )
    return None


# --- the schema ------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One rig variable, or one option of a dict-typed rig variable."""

    name: str
    type: str
    description: str
    default: Any = None
    nullable: bool = False  # null is a valid value (it means what `description` says)
    choices: tuple = ()
    choice_help: tuple[tuple[str, str], ...] = ()  # (choice, what it means) for the docs
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    format_help: str | None = None  # "like 570.86.16": said when the pattern does not match
    elements: str | None = None  # element type of a list
    options: tuple[Field, ...] = ()  # a dict with known keys
    key_rule: str | None = None  # a dict with free keys: "gpu_selector" or "nccl_env"
    value_field: Field | None = None  # a dict with free keys: what each value must be
    check: Callable[[Any], tuple[str, str] | None] | None = None  # extra rule: (msg, fix)
    roles: tuple[str, ...] = ()
    section: str = ""
    example: Any = None
    notes: str = ""  # extra text for the docs only

    def option(self, name: str) -> Field | None:
        for o in self.options:
            if o.name == name:
                return o
        return None


_S_DRIVER = "NVIDIA driver"
_S_P2P = "Patched P2P kernel module"
_S_POWER = "Power and persistence"
_S_HOST = "Host checks and changes"
_S_CUDA = "CUDA"
_S_NCCL = "NCCL"
_S_LAB = "Lab rigs"

SECTIONS = (_S_DRIVER, _S_P2P, _S_POWER, _S_HOST, _S_CUDA, _S_NCCL, _S_LAB)

_SOURCE_HELP = (
    ("cuda-repo", "NVIDIA's CUDA apt repository: it carries every release, so exact "
     "versions can be pinned."),
    ("debian", "the distribution's own packages (Debian non-free, Ubuntu restricted); "
     "only the few versions the distribution ships."),
    ("mirror", "an apt mirror of NVIDIA's CUDA repository (air-gapped fleets)."),
)

VARIABLES: tuple[Field, ...] = (
    # --- driver
    Field(
        "rig_driver_flavor",
        "str",
        "Which NVIDIA kernel module the rig runs. Both are NVIDIA's open kernel modules; "
        "`p2p` is the build patched so GeForce cards can do PCIe peer-to-peer.",
        default="open",
        choices=("open", "p2p"),
        choice_help=(
            ("open", "NVIDIA's stock open kernel modules; peer-to-peer between GeForce "
             "cards stays disabled."),
            ("p2p", "the open module patched for P2P through the large BAR1 aperture, built "
             "from `rig_p2p_source` at exactly `rig_driver_version`."),
        ),
        roles=("rig_facts", "rig_preflight", "rig_hw_checks", "nvidia_driver", "nccl"),
        section=_S_DRIVER,
        example="p2p",
    ),
    Field(
        "rig_driver_version",
        "str",
        "The exact NVIDIA driver version to install and hold (apt cannot move it). "
        "Null leaves the driver unmanaged: rigctl only reports what is installed.",
        nullable=True,
        pattern=DRIVER_VERSION_RE,
        check=driver_version_problem,
        format_help="the exact version nvidia-smi reports, like 570.86.16 or 565.77 "
        "(quote two-part versions: YAML reads 565.77 as a number)",
        roles=("rig_preflight", "nvidia_driver", "cuda", "nccl"),
        section=_S_DRIVER,
        example="570.86.16",
        notes="Required for `p2p`: the patched module and the userspace must be the same "
        "version to the last digit, or NVML fails with *Driver/library version mismatch*.",
    ),
    Field(
        "rig_driver_source",
        "str",
        "Where the NVIDIA driver packages come from.",
        default="cuda-repo",
        choices=("cuda-repo", "debian", "mirror"),
        choice_help=_SOURCE_HELP[:2]
        + (("mirror", "an apt mirror of NVIDIA's CUDA repository at "
            "`rig_driver_mirror_url` (air-gapped fleets)."),),
        roles=("rig_preflight", "nvidia_driver"),
        section=_S_DRIVER,
        example="cuda-repo",
    ),
    Field(
        "rig_driver_mirror_url",
        "str",
        "URL of the apt repository that mirrors NVIDIA's CUDA repository for this "
        "distribution and architecture (the directory holding `InRelease` and "
        "`Packages`). Required when `rig_driver_source` is `mirror`.",
        nullable=True,
        pattern=APT_URL_RE,
        format_help="an http://, https:// or file:// URL",
        roles=("rig_preflight", "nvidia_driver"),
        section=_S_DRIVER,
        example="https://mirror.example.com/nvidia-cuda/ubuntu2404/x86_64/",
    ),
    Field(
        "rig_driver_mirror_key_fingerprint",
        "str",
        "Fingerprint (40 hex digits) of the key that signs the mirror at "
        "`rig_driver_mirror_url`, for a mirror re-signed with your own key. Null: the "
        "mirror carries NVIDIA's own CUDA repository key, whose fingerprint rigctl pins. "
        "A key whose fingerprint differs is refused before apt trusts it.",
        nullable=True,
        pattern=r"^[0-9A-Fa-f]{40}$",
        format_help="40 hexadecimal digits (gpg --show-keys --with-colons KEYFILE, the fpr line)",
        roles=("nvidia_driver",),
        section=_S_DRIVER,
        example="EB693B3035CD5710E231E123A4B469963BF863CC",
    ),
    Field(
        "rig_driver_secure_boot_signing",
        "bool",
        "With Secure Boot on, sign the kernel modules rigctl builds (the patched P2P "
        "module) with a machine-owner key generated once per rig; you enroll it once at "
        "the console (rigctl prints the steps). False: refuse to build on a rig with "
        "Secure Boot on, where an unsigned module would not load.",
        default=True,
        roles=("nvidia_driver",),
        section=_S_DRIVER,
        example=True,
    ),
    # --- p2p
    Field(
        "rig_p2p_source",
        "dict",
        "Where the patched P2P kernel module comes from (flavor `p2p` only): either "
        "`catalog`, the name of a fork branch rigctl knows and pins, or `url` + `branch` "
        "+ `commit` (the full 40-character id: third-party kernel source is always pinned) "
        "of a git repository. The branch is named after the driver version "
        "it patches (`570.86.16-p2p`), which must equal `rig_driver_version`.",
        nullable=True,
        options=(
            Field(
                "catalog",
                "str",
                "Name of a known patched source (see the catalog below); it fixes url, "
                "branch and commit. With `catalog`, `url` may name a local mirror of that "
                "fork (air-gapped fleets); branch and pinned commit still come from the "
                "catalog and are verified after the fetch.",
                nullable=True,
                choices=tuple(P2P_CATALOG),
            ),
            Field(
                "url",
                "str",
                "Git URL of the fork: `https://`, `ssh://`, `git@host:owner/repo.git`, "
                "`file://` or an absolute path.",
                nullable=True,
                check=git_url_problem,
            ),
            Field(
                "branch",
                "str",
                "Branch to build; the known forks name it `<driver version>-p2p`.",
                nullable=True,
                pattern=r"^[^\s~^:?*\[\\]+$",
                format_help="a git branch name like 570.86.16-p2p",
            ),
            Field(
                "commit",
                "str",
                "Full 40-character commit id to build (abbreviated ids are refused: a "
                "pinned commit must be unambiguous). Without it the branch head at "
                "provisioning time is built, which is not reproducible.",
                nullable=True,
                pattern=COMMIT_RE,
                format_help="the full 40-character commit id (`git rev-parse <id>` prints it)",
            ),
        ),
        roles=("rig_preflight", "nvidia_driver"),
        section=_S_P2P,
        example={"catalog": "aikitoria-570.86.16"},
    ),
    # --- power
    Field(
        "rig_power_limit_w",
        "int",
        "Power limit in watts for every GPU, applied again at every boot (an `nvidia-smi "
        "-pl` setting does not survive a reboot). Null leaves each card at its default "
        "limit.",
        nullable=True,
        min=POWER_MIN_W,
        max=POWER_MAX_W,
        roles=("rig_preflight", "gpu_tuning"),
        section=_S_POWER,
        example=275,
        notes="Consumer rigs often run below stock: a 3090 at 270 W of 350 W loses about "
        "10% speed, runs cooler and keeps a 6-GPU box inside its PSU budget. The range "
        "here is a sanity check; each card's own `power.min_limit`/`power.max_limit` is "
        "checked on the host.",
    ),
    Field(
        "rig_power_limit_overrides",
        "dict",
        "Per-GPU power limits in watts that replace `rig_power_limit_w` for the GPUs "
        "named. A key selects one GPU by index (`0`), PCI bus id (`\"0000:41:00.0\"`) or "
        "UUID (`GPU-...`).",
        default={},
        key_rule="gpu_selector",
        value_field=Field("watts", "int", "Power limit in watts.", min=POWER_MIN_W,
                          max=POWER_MAX_W, example=250),
        roles=("rig_preflight", "gpu_tuning"),
        section=_S_POWER,
        example={"0000:41:00.0": 250},
        notes="Quote PCI bus ids: unquoted, YAML 1.1 reads `0000:41:00.0` as the base-60 "
        "number 2460.0. An index must be below `rig_gpu_count` when that is set; two keys "
        "may not name the same GPU (`3` and `\"3\"`).",
    ),
    Field(
        "rig_gpu_clock_lock_mhz",
        "dict",
        "Lock the core clocks of every GPU to a range in MHz (`nvidia-smi -lgc MIN,MAX`), "
        "applied again at every boot. Null leaves the clocks unlocked (`nvidia-smi -rgc`).",
        nullable=True,
        options=_clock_lock_options(),
        check=clock_lock_problem,
        roles=("gpu_tuning",),
        section=_S_POWER,
        example={"min": 210, "max": 1695},
        notes="A lock with `max` below the card's boost clock trades a few percent of speed "
        "for steadier clocks and less heat. The range here is a sanity check; each card's "
        "own `clocks.max.sm` is checked on the host. Provision and verify compare the same "
        "live state: where the GPUs can say what is locked (lab rigs) it is read from them; "
        "real drivers cannot read locked clocks back through nvidia-smi everywhere, so there "
        "rigctl records what it applied since boot in `/run/rigctl/gpu-clocks.json`, "
        "compares against that, and asserts every configured lock again on each provision "
        "(a lock reset by hand with `-rgc` is repaired).",
    ),
    Field(
        "rig_gpu_clock_lock_overrides",
        "dict",
        "Per-GPU clock locks `{min, max}` in MHz that replace `rig_gpu_clock_lock_mhz` for "
        "the GPUs named. A key selects one GPU by index (`0`), PCI bus id "
        "(`\"0000:41:00.0\"`) or UUID (`GPU-...`).",
        default={},
        key_rule="gpu_selector",
        value_field=Field("clocks", "dict", "Clock lock in MHz.", options=_clock_lock_options(),
                          check=clock_lock_problem, example={"min": 210, "max": 1500}),
        roles=("gpu_tuning",),
        section=_S_POWER,
        example={"0000:41:00.0": {"min": 210, "max": 1500}},
        notes="Quote PCI bus ids. An index must be below `rig_gpu_count` when that is set; "
        "two keys may not name the same GPU.",
    ),
    Field(
        "rig_compute_mode",
        "str",
        "Compute mode of every GPU (`nvidia-smi -c`), applied again at every boot. Null "
        "means `default`.",
        nullable=True,
        choices=COMPUTE_MODES,
        choice_help=(
            ("default", "any number of processes may use a GPU (`-c 0`)"),
            ("exclusive_process", "one process at a time per GPU (`-c 3`), e.g. one "
             "scheduler job per GPU"),
            ("prohibited", "no CUDA process may use the GPUs (`-c 2`)"),
        ),
        roles=("gpu_tuning",),
        section=_S_POWER,
        example="default",
    ),
    Field(
        "rig_persistence_mode",
        "bool",
        "Keep the driver initialized while no process uses the GPUs, through the "
        "`nvidia-persistenced` service started at boot: CUDA processes start without a "
        "multi-second driver load. The deprecated `nvidia-smi -pm 1` is not used.",
        default=True,
        roles=("gpu_tuning",),
        section=_S_POWER,
        example=True,
    ),
    # --- host checks
    Field(
        "rig_iommu_policy",
        "str",
        "What rigctl does about the IOMMU. P2P needs it off or in passthrough: in "
        "translating mode peer copies come back zeroed or as NaN (IO_PAGE_FAULT in "
        "dmesg).",
        default="check",
        choices=("check", "passthrough", "off"),
        choice_help=(
            ("check", "only check and report the IOMMU mode; change nothing."),
            ("passthrough", "put `iommu=pt` with `amd_iommu=on` or `intel_iommu=on` (by CPU "
             "vendor) on the kernel command line through a GRUB drop-in; takes effect at "
             "the next reboot."),
            ("off", "turn the IOMMU off the same way (`amd_iommu=off` / `intel_iommu=off`); "
             "this also ends VFIO passthrough of devices to VMs."),
        ),
        roles=("rig_preflight", "rig_hw_checks"),
        section=_S_HOST,
        example="passthrough",
    ),
    Field(
        "rig_reboot_policy",
        "str",
        "What rigctl does when a change needs a reboot (a new kernel module, a new kernel "
        "command line).",
        default="never",
        choices=("never", "auto"),
        choice_help=(
            ("never", "report that a reboot is needed and stop there; you reboot when the "
             "rig is idle."),
            ("auto", "reboot the rig and wait for it to come back."),
        ),
        roles=("nvidia_driver", "rig_hw_checks", "gpu_tuning"),
        section=_S_HOST,
        example="never",
        notes="`never` is the default because a reboot kills the training run on a rig "
        "that may have cost $6,000 and a week of compute, and a rig that does not come "
        "back (a BIOS prompt, an unsigned module under Secure Boot) needs someone at the "
        "console.",
    ),
    Field(
        "rig_hw_check_policy",
        "str",
        "What a failed hardware check does (Resizable BAR and BAR1 size, IOMMU mode, ACS, "
        "PCIe link width and generation, GPUs on chipset lanes). Null: `enforce` on `p2p` "
        "rigs, which cannot do P2P without these, `warn` otherwise.",
        nullable=True,
        choices=("enforce", "warn"),
        choice_help=(
            ("enforce", "stop before changing anything."),
            ("warn", "report the problem and go on."),
        ),
        roles=("rig_preflight", "rig_hw_checks"),
        section=_S_HOST,
        example="enforce",
    ),
    Field(
        "rig_gpu_count",
        "int",
        "Number of NVIDIA GPUs the rig must have; preflight and verify fail when another "
        "number shows up (a card that fell off the bus, a bad riser). Null: not checked.",
        nullable=True,
        min=1,
        max=MAX_GPUS,
        roles=("rig_facts", "rig_preflight"),
        section=_S_HOST,
        example=6,
    ),
    Field(
        "rig_min_free_disk_gib",
        "int",
        "Free space in GiB that preflight requires on `/` before anything is installed "
        "(driver packages, the module build, CUDA).",
        default=10,
        min=1,
        max=10000,
        roles=("rig_facts", "rig_preflight"),
        section=_S_HOST,
        example=20,
    ),
    # --- cuda
    Field(
        "rig_cuda_version",
        "str",
        "CUDA toolkit version to install, `major.minor`. Null: CUDA is not managed.",
        nullable=True,
        pattern=CUDA_VERSION_RE,
        format_help="major.minor like \"12.8\" (quote it: YAML reads 12.10 as the number "
        "12.1)",
        roles=("cuda", "nccl"),
        section=_S_CUDA,
        example="12.8",
        notes="The driver must be new enough for the CUDA major version (12.x needs "
        f"{CUDA_MIN_DRIVER[12]} or newer, 13.x needs {CUDA_MIN_DRIVER[13]} or newer).",
    ),
    Field(
        "rig_cuda_source",
        "str",
        "Where the CUDA toolkit packages come from.",
        default="cuda-repo",
        choices=("cuda-repo", "debian", "mirror"),
        choice_help=_SOURCE_HELP[:2]
        + (("mirror", "an apt mirror of NVIDIA's CUDA repository at "
            "`rig_cuda_mirror_url`."),),
        roles=("cuda",),
        section=_S_CUDA,
        example="cuda-repo",
    ),
    Field(
        "rig_cuda_mirror_url",
        "str",
        "URL of the apt mirror of NVIDIA's CUDA repository the toolkit comes from. "
        "Required when `rig_cuda_source` is `mirror` (often the same as "
        "`rig_driver_mirror_url`).",
        nullable=True,
        pattern=APT_URL_RE,
        format_help="an http://, https:// or file:// URL",
        roles=("cuda",),
        section=_S_CUDA,
        example="https://mirror.example.com/nvidia-cuda/ubuntu2404/x86_64/",
    ),
    Field(
        "rig_cuda_mirror_key_url",
        "str",
        "URL of the key file that signs the mirror at `rig_cuda_mirror_url`. Null: the file "
        "`3bf863cc.pub` at the mirror's root, where a plain mirror of NVIDIA's repository "
        "keeps NVIDIA's key.",
        nullable=True,
        pattern=APT_URL_RE,
        format_help="an http://, https:// or file:// URL",
        roles=("cuda",),
        section=_S_CUDA,
        example="https://mirror.example.com/nvidia-cuda/ubuntu2404/x86_64/3bf863cc.pub",
    ),
    Field(
        "rig_cuda_mirror_key_fingerprint",
        "str",
        "Fingerprint (40 hex digits) of the key that signs the mirror at "
        "`rig_cuda_mirror_url`, for a mirror re-signed with your own key. Null: NVIDIA's CUDA "
        "repository key, whose fingerprint rigctl pins. A key file that is not exactly this key "
        "is refused before apt trusts it, and apt must then accept the mirror's signature.",
        nullable=True,
        pattern=r"^[0-9A-Fa-f]{40}$",
        format_help="40 hexadecimal digits (gpg --show-keys --with-colons KEYFILE, the fpr line)",
        roles=("cuda",),
        section=_S_CUDA,
        example="EB693B3035CD5710E231E123A4B469963BF863CC",
    ),
    Field(
        "rig_cuda_extra_versions",
        "list",
        "More CUDA toolkits installed side by side (`major.minor` each), for software that "
        "needs an older or newer one. `rig_cuda_version` stays the default (`/usr/local/cuda`, "
        "`nvcc` on PATH). Only NVIDIA's repository (`cuda-repo`, `mirror`) has several "
        "releases; a release dropped from this list is left installed (remove it with apt).",
        default=[],
        elements="str",
        roles=("cuda",),
        section=_S_CUDA,
        example=["12.6"],
    ),
    Field(
        "rig_cuda_minor_version_compat",
        "bool",
        "Accept a toolkit newer than the installed driver's own CUDA release within the same "
        "major release (CUDA minor version compatibility: programs run, but PTX from the newer "
        "toolkit cannot be JIT-compiled and newer APIs fail). False: such a pair is refused.",
        default=False,
        roles=("cuda",),
        section=_S_CUDA,
        example=False,
    ),
    # --- nccl
    Field(
        "rig_nccl_version",
        "str",
        "NCCL version to install (`2.26.2`, or the apt form `2.26.2-1`); the build for "
        "`rig_cuda_version` is chosen. Null: NCCL is not managed.",
        nullable=True,
        pattern=NCCL_VERSION_RE,
        format_help="like 2.26.2 or 2.26.2-1",
        roles=("nccl",),
        section=_S_NCCL,
        example="2.26.2-1",
    ),
    Field(
        "rig_nccl_source",
        "str",
        "Where the NCCL packages (libnccl2, libnccl-dev) come from.",
        default="cuda-repo",
        choices=("cuda-repo", "mirror"),
        choice_help=(_SOURCE_HELP[0], ("mirror", "an apt repository at `rig_nccl_mirror_url` "
                                       "(a mirror of NVIDIA's CUDA repository, or your own "
                                       "signed repository of NCCL packages).")),
        roles=("nccl",),
        section=_S_NCCL,
        example="cuda-repo",
    ),
    Field(
        "rig_nccl_mirror_url",
        "str",
        "URL of the apt repository NCCL comes from when `rig_nccl_source` is `mirror` (a flat "
        "repository like NVIDIA's; often the same as `rig_cuda_mirror_url`).",
        nullable=True,
        pattern=APT_URL_RE,
        format_help="an http://, https:// or file:// URL",
        roles=("nccl",),
        section=_S_NCCL,
        example="https://mirror.example.com/nvidia-cuda/ubuntu2404/x86_64/",
    ),
    Field(
        "rig_nccl_mirror_key_url",
        "str",
        "URL of the key file that signs the repository at `rig_nccl_mirror_url`. Null: the "
        "file `3bf863cc.pub` at the repository's root (NVIDIA's key, kept by a plain mirror).",
        nullable=True,
        pattern=APT_URL_RE,
        format_help="an http://, https:// or file:// URL",
        roles=("nccl",),
        section=_S_NCCL,
        example="https://mirror.example.com/nvidia-cuda/ubuntu2404/x86_64/3bf863cc.pub",
    ),
    Field(
        "rig_nccl_mirror_key_fingerprint",
        "str",
        "Fingerprint of the key that signs the repository at `rig_nccl_mirror_url`. Null: "
        "NVIDIA's CUDA repository key. Anything else is refused before apt trusts it.",
        nullable=True,
        pattern=r"^[0-9A-Fa-f]{40}$",
        format_help="40 hexadecimal digits (gpg --show-keys --with-colons KEYFILE, the fpr line)",
        roles=("nccl",),
        section=_S_NCCL,
        example="EB693B3035CD5710E231E123A4B469963BF863CC",
    ),
    Field(
        "rig_nccl_socket_ifname",
        "str",
        "Network interfaces NCCL may use for bootstrap and its socket transport "
        "(`NCCL_SOCKET_IFNAME`): a name prefix like `eno`, `=eno1` for one exact name, "
        "`^docker,lo` to exclude. Null lets NCCL choose.",
        nullable=True,
        pattern=IFNAME_RE,
        format_help="interface names or prefixes separated by commas, like eno1 or "
        "^docker,lo",
        roles=("nccl",),
        section=_S_NCCL,
        example="^docker,lo",
    ),
    Field(
        "rig_nccl_env",
        "dict",
        "More NCCL settings, written to the rig's `/etc/nccl.conf`; every key must start "
        "with `NCCL_`. Rigs with the patched P2P module usually run `NCCL_P2P_LEVEL: SYS`; "
        "rigs without working P2P run `NCCL_P2P_DISABLE: 1`, which avoids hangs.",
        default={},
        key_rule="nccl_env",
        value_field=Field("value", "scalar", "A string, number or boolean.", example="SYS"),
        roles=("nccl",),
        section=_S_NCCL,
        example={"NCCL_P2P_LEVEL": "SYS"},
    ),
    # --- lab
    Field(
        "rig_lab_profile",
        "str",
        "Set by `rigctl lab up` on simulated rigs only: the simulated rig profile the lab "
        "rig was built from (like `4x3090`). Never set it on a real rig; `rigctl inventory "
        "check` warns when a host that is not on a loopback address carries it.",
        nullable=True,
        pattern=LAB_PROFILE_RE,
        format_help="a profile name like 4x3090",
        roles=(),  # no role reads it: a lab rig is recognized by its simulated GPU layer
        section=_S_LAB,
        example="4x3090",
    ),
)

BY_NAME: dict[str, Field] = {f.name: f for f in VARIABLES}
NAMES: tuple[str, ...] = tuple(BY_NAME)

# Rig variables that were removed, with what to do instead: `rigctl inventory check` warns
# about each one it finds (it is ignored) and names the replacement.
REMOVED: dict[str, str] = {
    "rig_apt_mirror_url": (
        "no role ever read it. NVIDIA's repository, the CUDA toolkit and NCCL have their own "
        "mirrors (rig_driver_source/rig_cuda_source/rig_nccl_source: mirror, with "
        "rig_driver_mirror_url, rig_cuda_mirror_url, rig_nccl_mirror_url); the "
        "distribution's own archive comes from the apt sources configured on the rig, so "
        "point those at your mirror"
    ),
}


def get(name: str) -> Field | None:
    return BY_NAME.get(name)


def defaults() -> dict[str, Any]:
    """Every rig variable with its default (fresh copies of mutable defaults)."""
    out = {}
    for f in VARIABLES:
        d = f.default
        out[f.name] = dict(d) if isinstance(d, dict) else list(d) if isinstance(d, list) else d
    return out


def yaml_inline(value: Any) -> str:
    """A value as it is written on one line of YAML (``{catalog: x}``, ``"12.8"``)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    if text.endswith("\n...") or text.endswith(" ..."):
        text = text[: -len("...")].strip()
    if isinstance(value, str) and text.startswith("'") and '"' not in value:
        text = '"' + text[1:-1].replace("''", "'") + '"'
    return text


def example_line(f: Field, name: str | None = None) -> str:
    """``name: example`` for messages and docs ('' when the field has no example)."""
    if f.example is None:
        return ""
    return f"{name or f.name}: {yaml_inline(f.example)}"


def for_role(role: str) -> list[Field]:
    return [f for f in VARIABLES if role in f.roles]


# --- Ansible role argument specs ---------------------------------------------------------

ARGSPEC_HEADER = (
    "# Generated from rigctl/inventory/schema.py by\n"
    "#   python -m rigctl.inventory.schema --write-argspecs roles\n"
    "# Do not edit: change the schema and regenerate (a unit test checks they agree).\n"
)


def _argspec_type(f: Field) -> str:
    return {"scalar": "raw"}.get(f.type, f.type)


def _argspec_option(f: Field) -> dict[str, Any]:
    opt: dict[str, Any] = {"type": _argspec_type(f)}
    desc = [f.description]
    if f.nullable and f.default is None:
        desc.append("Null is allowed.")
    if f.min is not None or f.max is not None:
        desc.append(f"Range {f.min}..{f.max}.")
    if f.pattern:
        desc.append(f"Format: {f.format_help or f.pattern}.")
    opt["description"] = desc
    if f.default is not None:
        opt["default"] = f.default
    if f.choices:
        # an explicit null must pass Ansible's choices check too
        opt["choices"] = [*f.choices, None] if f.nullable else list(f.choices)
    if f.type == "list" and f.elements:
        opt["elements"] = f.elements
    if f.options:
        opt["options"] = {o.name: _argspec_option(o) for o in f.options}
    return opt


def argument_spec(role: str) -> dict[str, Any]:
    """The ``meta/argument_specs.yml`` data of a role."""
    return {
        "argument_specs": {
            "main": {
                "short_description": ROLES[role],
                "description": [
                    ROLES[role],
                    "The rig variables are defined in rigctl/inventory/schema.py and "
                    "documented in docs/inventory.md.",
                ],
                "options": {f.name: _argspec_option(f) for f in for_role(role)},
            }
        }
    }


def _yaml_dump(data: Any) -> str:
    import yaml

    class _Dumper(yaml.SafeDumper):
        def increase_indent(self, flow=False, indentless=False):  # indent lists under keys
            return super().increase_indent(flow, False)

    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=88, allow_unicode=True)


def render_argspec(role: str) -> str:
    return "---\n" + ARGSPEC_HEADER + _yaml_dump(argument_spec(role))


def _argspec_roles(roles_dir: str) -> list[str]:
    return [r for r in ROLES if os.path.isdir(os.path.join(roles_dir, r))]


def write_argspecs(roles_dir: str) -> list[str]:
    """Write meta/argument_specs.yml of every known role that exists under roles_dir."""
    written = []
    for role in _argspec_roles(roles_dir):
        meta = os.path.join(roles_dir, role, "meta")
        os.makedirs(meta, exist_ok=True)
        path = os.path.join(meta, "argument_specs.yml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(render_argspec(role))
        written.append(path)
    return written


def _diff_options(prefix: str, want: dict, have: Any) -> list[str]:
    out = []
    if not isinstance(have, dict):
        return [f"{prefix}: options missing or not a mapping"]
    for name in want:
        if name not in have:
            out.append(f"{prefix}: option {name!r} missing")
            continue
        w, h = want[name], have[name]
        if not isinstance(h, dict):
            out.append(f"{prefix}.{name}: not a mapping")
            continue
        for attr in sorted(set(w) | set(h)):
            if attr == "options":
                out.extend(_diff_options(f"{prefix}.{name}", w.get("options", {}),
                                         h.get("options")))
            elif w.get(attr) != h.get(attr):
                out.append(f"{prefix}.{name}.{attr}: schema says {w.get(attr)!r}, "
                           f"file says {h.get(attr)!r}")
    for name in have:
        if name not in want:
            out.append(f"{prefix}: option {name!r} is not in the schema for this role")
    return out


def check_argspecs(roles_dir: str) -> list[str]:
    """Differences between the roles' argument specs and the schema (empty: in sync)."""
    import yaml

    problems = []
    for role in _argspec_roles(roles_dir):
        path = os.path.join(roles_dir, role, "meta", "argument_specs.yml")
        if not os.path.exists(path):
            problems.append(f"{path}: missing")
            continue
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        if text == render_argspec(role):
            continue
        try:
            have = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problems.append(f"{path}: not valid YAML: {exc}")
            continue
        want = argument_spec(role)
        found = []
        try:
            main_have = have["argument_specs"]["main"]
        except (TypeError, KeyError):
            found.append(f"{path}: no argument_specs.main")
        else:
            main_want = want["argument_specs"]["main"]
            for attr in ("short_description", "description"):
                if main_have.get(attr) != main_want[attr]:
                    found.append(f"{path}: main.{attr} differs from the schema")
            found.extend(f"{path}: {d}" for d in
                         _diff_options("main", main_want["options"], main_have.get("options")))
        problems.extend(found or [f"{path}: same content, different text (regenerate it)"])
    return problems + check_role_defaults(roles_dir)


def check_role_defaults(roles_dir: str) -> list[str]:
    """Rig variables in the roles' ``defaults/main.yml`` must be schema variables with the
    schema's default (Ansible does not apply argument spec defaults, so roles repeat them)."""
    import yaml

    problems = []
    for role in _argspec_roles(roles_dir):
        path = os.path.join(roles_dir, role, "defaults", "main.yml")
        if not os.path.exists(path):
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError) as exc:
            problems.append(f"{path}: cannot read: {exc}")
            continue
        if not isinstance(data, dict):
            continue
        for name, value in data.items():
            if not isinstance(name, str) or not name.startswith("rig_"):
                continue
            f = BY_NAME.get(name)
            if f is None:
                if not any(name.startswith(r + "_") or name == r for r in ROLES):
                    problems.append(f"{path}: {name} is not a rig variable of the schema "
                                    "(role-internal variables are named after the role)")
            elif value != f.default:
                problems.append(f"{path}: {name} is {value!r} here but the schema default is "
                                f"{f.default!r} (edit this file or the schema)")
            elif role not in f.roles:
                problems.append(f"{path}: {name} is not listed as read by {role} in the schema "
                                "(add the role to its roles)")
    return problems


# --- docs/inventory.md ---------------------------------------------------------------------

DOC_INTRO = """\
# Inventory reference

<!-- Generated from rigctl/inventory/schema.py by
     python -m rigctl.inventory.schema --write-docs docs/inventory.md
     Do not edit: a unit test checks that this file matches the schema. -->

rigctl reads standard Ansible YAML inventories, so the same files work with
`ansible-playbook -i inventory/...`. Start from `inventory/example/`, a small documented
fleet, and check your copy with:

```
rigctl inventory check -i inventory/           # every problem, with file:line; contacts no host
rigctl inventory show  -i inventory/ rig-a     # what a rig will get, and where each value comes from
```

## Format

An inventory is a YAML file (or a directory of them) in Ansible's YAML inventory format:
groups under `all:`, each with `hosts:`, `vars:` and `children:`.

```yaml
all:
  children:
    rigs:                 # the playbooks target this group: every rig must be under it
      children:
        epyc:
          hosts:
            rig-epyc-1: {ansible_host: 192.0.2.11}
          vars:
            rig_driver_flavor: p2p
```

- A directory inventory reads every `*.yml`, `*.yaml` and `*.json` file in it (and in its
  subdirectories) as one inventory, plus `group_vars/` and `host_vars/` in it.
- `group_vars/<group>.yml` (or `group_vars/<group>/*.yml`) and `host_vars/<host>.yml` (or
  `host_vars/<host>/*.yml`) next to the inventory file are read too, as Ansible reads them.
  When both `group_vars/<group>/` and `group_vars/<group>.yml` exist, Ansible reads only the
  directory.
- Host names may use ranges (`rig-[1:4]`) and a port (`rig-a:2222`).
- Values with Jinja (`{{ ... }}`) and `!vault` values are not type-checked (the check says
  so in a note); files encrypted with ansible-vault are not read.

## Where a value comes from (precedence)

Lowest first; a later source replaces the value of an earlier one (dicts are replaced, not
merged):

1. the schema default (below);
2. `vars:` of group `all` in the inventory files;
3. `vars:` of every other group of the host in the inventory files, parents before children
   (groups at the same depth: alphabetical order, later wins; `ansible_group_priority` moves
   a group later);
4. `group_vars/all`;
5. `group_vars/<group>` files, in the same group order;
6. variables written on the host in the inventory file;
7. `host_vars/<host>` files.

This is Ansible's own order, so note one surprise it has: a `group_vars/all.yml` file beats
`vars:` of any group written inside the inventory file. `rigctl inventory show` prints
every rig variable of a host with the file and line its value comes from.

## What `rigctl inventory check` reports

Errors (exit 2, nothing runs): YAML syntax errors; files that are not Ansible YAML
inventories; unknown section keys in a group (only `hosts`, `vars`, `children`); keys
written twice in one mapping; unknown `rig_*` variables (with the closest name);
wrong types, values out of range, not among the choices or in a bad format; the rules
between variables below; two hosts with the same `ansible_host` and `ansible_port`; a
missing or empty `rigs` group; group cycles; a missing inventory path.

Warnings (exit 0): a variable set twice for the same host or group in the inventory files
(the later one wins); `group_vars`/`host_vars` files for groups or hosts the inventory does
not have; settings that have no effect (`rig_p2p_source` on an `open` rig);
`rig_lab_profile` on a host that is not on a loopback address; names that
look like a rig variable without the `rig_` prefix.

## Rules between variables

- `rig_driver_flavor: p2p` needs `rig_driver_version` and `rig_p2p_source`.
- `rig_p2p_source` takes `catalog` (optionally with `url`, a mirror of that fork), or
  `url`, `branch` and `commit`; `branch`/`commit` never go with `catalog`.
- The driver version in the P2P branch name (`570.86.16-p2p`) or of the catalog entry must
  equal `rig_driver_version`.
- `rig_p2p_source` on an `open` rig is ignored (a warning).
- `rig_driver_source: mirror` needs `rig_driver_mirror_url`; `rig_cuda_source: mirror` needs
  `rig_cuda_mirror_url`.
- `rig_power_limit_overrides`, `rig_gpu_clock_lock_overrides`: an index must be below
  `rig_gpu_count` (when set), and no two keys may name the same GPU.
- A clock lock (`rig_gpu_clock_lock_mhz`, each override) needs `min` <= `max`.
- `rig_nccl_env` keys start with `NCCL_`; `NCCL_SOCKET_IFNAME` goes in
  `rig_nccl_socket_ifname`, not in both.
- The driver must be new enough for the CUDA major version, and at least
  {open_min} (the first driver with open kernel modules).
"""


def _md_value(v: Any) -> str:
    import json

    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v) if v else ("{}" if isinstance(v, dict) else "[]")
    return str(v)


def _type_text(f: Field) -> str:
    base = {
        "str": "string", "int": "integer", "float": "number", "bool": "boolean",
        "list": "list", "dict": "mapping", "scalar": "string, number or boolean",
    }[f.type]
    if f.type == "list" and f.elements:
        base += f" of {f.elements}"
    if f.key_rule == "gpu_selector":
        what = "`{min, max}` MHz" if f.value_field and f.value_field.type == "dict" else "integer watts"
        base = f"mapping: GPU selector → {what}"
    elif f.key_rule == "nccl_env":
        base = "mapping: `NCCL_*` name → string, number or boolean"
    if f.nullable:
        base += " or null"
    return base


def _field_md(f: Field, level: int = 3) -> list[str]:
    out = [f"{'#' * level} `{f.name}`", ""]
    out.append(f.description)
    out.append("")
    out.append(f"- type: {_type_text(f)}")
    out.append(f"- default: `{_md_value(f.default)}`")
    if f.choices and f.choice_help:
        out.append("- choices:")
        for choice, meaning in f.choice_help:
            out.append(f"  - `{choice}`: {meaning}")
    elif f.choices:
        out.append("- choices: " + ", ".join(f"`{c}`" for c in f.choices))
    if f.min is not None or f.max is not None:
        out.append(f"- range: {f.min} to {f.max}")
    if f.value_field is not None and f.value_field.min is not None:
        out.append(f"- each value: {f.value_field.min} to {f.value_field.max}")
    if f.pattern:
        out.append(f"- format: {f.format_help} (`{f.pattern}`)")
    if f.roles:
        out.append("- read by: " + ", ".join(f"`{r}`" for r in f.roles))
    else:
        out.append("- read by: no role (a record of how the rig was made)")
    if f.example is not None:
        out.append(f"- example: `{example_line(f)}`")
    out.append("")
    if f.notes:
        out.extend([f.notes, ""])
    if f.options:
        out.append("Options:")
        out.append("")
        for o in f.options:
            extra = ""
            if o.name == "catalog":
                extra = " One of: " + ", ".join(f"`{c}`" for c in o.choices) + "."
            elif o.format_help:
                extra = f" Format: {o.format_help}."
            out.append(f"- `{o.name}` ({_type_text(o)}): {o.description}{extra}")
        out.append("")
    return out


def render_docs() -> str:
    lines = [DOC_INTRO.replace("{open_min}", OPEN_MODULE_MIN_DRIVER).rstrip("\n"), ""]
    lines += ["## Rig variables", ""]
    lines.append("| variable | type | default | read by |")
    lines.append("| --- | --- | --- | --- |")
    for f in VARIABLES:
        lines.append(f"| [`{f.name}`](#{f.name}) | {_type_text(f)} | "
                     f"`{_md_value(f.default)}` | {', '.join(f.roles) or '-'} |")
    lines.append("")
    for section in SECTIONS:
        fields = [f for f in VARIABLES if f.section == section]
        if not fields:
            continue
        lines += [f"## {section}", ""]
        for f in fields:
            lines.extend(_field_md(f))
        if section == _S_P2P:
            lines += ["### P2P source catalog", ""]
            lines.append("| catalog name | url | branch | commit | driver |")
            lines.append("| --- | --- | --- | --- | --- |")
            for s in P2P_CATALOG.values():
                lines.append(f"| `{s.name}` | {s.url} | `{s.branch}` | `{s.commit}` | "
                             f"{s.driver_version} |")
            lines += ["", "Newer branches of both forks work through `url`/`branch`/`commit`.",
                      ""]
    if REMOVED:
        lines += ["## Removed rig variables", "",
                  "`rigctl inventory check` warns about these and they are ignored.", ""]
        for name, why in REMOVED.items():
            lines += [f"- `{name}`: {why}.", ""]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def check_docs(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            have = fh.read()
    except OSError as exc:
        return [f"{path}: cannot read: {exc.strerror}"]
    want = render_docs()
    if have == want:
        return []
    diff = difflib.unified_diff(have.splitlines(), want.splitlines(), path, "schema", n=0,
                                lineterm="")
    return [f"{path}: differs from the schema (regenerate it)", *list(diff)[:40]]


# --- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rigctl.inventory.schema",
        description="Generate or check the files derived from the rig variable schema.",
    )
    parser.add_argument("--write-argspecs", metavar="ROLES_DIR")
    parser.add_argument("--check-argspecs", metavar="ROLES_DIR")
    parser.add_argument("--write-docs", metavar="FILE")
    parser.add_argument("--check-docs", metavar="FILE")
    args = parser.parse_args(argv)
    if not any(vars(args).values()):
        parser.print_help()
        return 2
    rc = 0
    if args.write_argspecs:
        if not os.path.isdir(args.write_argspecs):
            print(f"error: roles directory not found: {args.write_argspecs}", file=sys.stderr)
            return 2
        for path in write_argspecs(args.write_argspecs):
            print(f"wrote {path}")
    if args.write_docs:
        with open(args.write_docs, "w", encoding="utf-8") as fh:
            fh.write(render_docs())
        print(f"wrote {args.write_docs}")
    if args.check_argspecs:
        if not os.path.isdir(args.check_argspecs):
            print(f"error: roles directory not found: {args.check_argspecs}", file=sys.stderr)
            return 2
        problems = check_argspecs(args.check_argspecs)
        for p in problems:
            print(p)
        if problems:
            print("fix: python -m rigctl.inventory.schema --write-argspecs "
                  f"{args.check_argspecs}")
            rc = 1
    if args.check_docs:
        problems = check_docs(args.check_docs)
        for p in problems:
            print(p)
        if problems:
            print(f"fix: python -m rigctl.inventory.schema --write-docs {args.check_docs}")
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
