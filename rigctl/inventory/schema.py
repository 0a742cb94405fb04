"""The rig variables: their ONE definition.

Every variable a rigctl role reads from the inventory is named ``rig_*`` and defined here,
in ``VARIABLES``: type, default, allowed values, what it means for a rig owner, and which
roles read it. Adding a variable is adding a ``Field`` there; from the list come:

- the check of each value (values.py; rules a pattern cannot say: formats.py) and the
  inventory check (``rigctl inventory check``, validate.py),
- the roles' ``meta/argument_specs.yml`` (argspecs.py) and the inventory reference
  ``docs/inventory.md`` (docs.py), written and checked by
  ``python -m rigctl.inventory.generate --write-argspecs roles --write-docs docs/inventory.md``
  (``--check-argspecs``/``--check-docs``: the unit tests run both).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rigctl.core import cuda as cudalib
from rigctl.core import driver as driverlib
from rigctl.core import gpudb, health
from rigctl.inventory.formats import (
    clock_lock_problem,
    driver_version_problem,
    git_url_problem,
    pull_url_problem,
)
from rigctl.inventory.p2pfloors import p2p_floor_problem, p2p_pair_floors_problem
from rigctl.inventory.power_budget import psu_watts_problem

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
    "rig_pull": "Pull mode: ansible-core, git and the rigctl.rig collection on the rig, and a "
    "systemd timer running ansible-pull of the owner's inventory repository at a pinned "
    "commit.",
}

TARGET_GROUP = "rigs"



@dataclass(frozen=True)
class ValueType:
    """A type a field can have: which values it accepts, and how the check's messages, the
    docs and the roles' argument specs name it."""

    accepts: Callable[[Any], bool]
    words: str  # in messages: "expected an integer"
    doc: str  # in docs/inventory.md: "integer"
    argspec: str  # the type in meta/argument_specs.yml


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Value types. "scalar" (a string, number or boolean) only appears inside a dict.
TYPES: dict[str, ValueType] = {
    "str": ValueType(lambda v: isinstance(v, str), "a string", "string", "str"),
    "int": ValueType(_is_int, "an integer", "integer", "int"),
    "float": ValueType(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                       "a number", "number", "float"),
    "bool": ValueType(lambda v: isinstance(v, bool), "true or false", "boolean", "bool"),
    "list": ValueType(lambda v: isinstance(v, list), "a list", "list", "list"),
    "dict": ValueType(lambda v: isinstance(v, dict), "a mapping", "mapping", "dict"),
    "scalar": ValueType(lambda v: isinstance(v, (str, int, float, bool)),
                        "a string, number or boolean", "string, number or boolean", "raw"),
    "int_or_list": ValueType(lambda v: isinstance(v, list) or _is_int(v),
                             "an integer or a list of integers", "integer or list of integers",
                             "raw"),
}

DRIVER_VERSION_RE = driverlib.VERSION_PATTERN
CUDA_VERSION_RE = cudalib.CUDA_VERSION_PATTERN
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
# GPU selectors (the keys of the per-GPU dicts, key_rule "gpu_selector"):
# gpudb.parse_gpu_selector, the parser the GPU facts on the host match them with.
MAX_GPUS = 16

# The lowest driver each CUDA major release runs on (NVIDIA's CUDA release notes,
# "minor version compatibility"): older drivers cannot run that CUDA at all.
CUDA_MIN_DRIVER: dict[int, str] = dict(cudalib.MINOR_COMPAT_DRIVER)


def _clock_lock_options() -> tuple:
    return (
        Field("min", "int", "Lowest core clock in MHz.", min=CLOCK_MIN_MHZ, max=CLOCK_MAX_MHZ),
        Field("max", "int", "Highest core clock in MHz.", min=CLOCK_MIN_MHZ, max=CLOCK_MAX_MHZ),
    )


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
_S_PULL = "Pull mode (ansible-pull)"
_S_LAB = "Lab rigs"

SECTIONS = (_S_DRIVER, _S_P2P, _S_POWER, _S_HOST, _S_CUDA, _S_NCCL, _S_PULL, _S_LAB)

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
        roles=("rig_preflight", "rig_hw_checks", "nvidia_driver", "cuda", "nccl"),
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
        choices=("cuda-repo", "debian", "mirror", "runfile"),
        choice_help=_SOURCE_HELP[:2]
        + (("mirror", "an apt mirror of NVIDIA's CUDA repository at "
            "`rig_driver_mirror_url` (air-gapped fleets)."),
           ("runfile", "NVIDIA's own installer (`NVIDIA-Linux-x86_64-<version>.run`) at "
            "`rig_driver_runfile_url`, checked against `rig_driver_runfile_sha256` and run "
            "without its kernel modules (flavor `p2p` only: the patched module is built by "
            "DKMS). For versions no distribution ships. Distribution driver packages on the "
            "rig are refused (purge them first); `gpu_tuning` writes the unit for the "
            "installer's `nvidia-persistenced` instead of installing the distribution's "
            "package."),),
        roles=("rig_preflight", "nvidia_driver", "gpu_tuning"),
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
        "rig_driver_runfile_url",
        "str",
        "URL of NVIDIA's driver installer `NVIDIA-Linux-x86_64-<version>.run` (your mirror "
        "of NVIDIA's download site, or a file on the rig). Required when "
        "`rig_driver_source` is `runfile`; the installer's own `--version` must say "
        "`rig_driver_version`.",
        nullable=True,
        pattern=APT_URL_RE,
        format_help="an http://, https:// or file:// URL",
        roles=("nvidia_driver",),
        section=_S_DRIVER,
        example="https://mirror.example.com/nvidia/NVIDIA-Linux-x86_64-580.105.08.run",
    ),
    Field(
        "rig_driver_runfile_sha256",
        "str",
        "The sha256 of the file at `rig_driver_runfile_url` (NVIDIA publishes one per "
        "installer; `sha256sum FILE`). Required with `rig_driver_source: runfile`: a "
        "download with another checksum is refused before anything changes.",
        nullable=True,
        pattern=r"^[0-9A-Fa-f]{64}$",
        format_help="64 hexadecimal digits",
        roles=("nvidia_driver",),
        section=_S_DRIVER,
        example="0f3c7f5e8b0b7c4c7a2a8d8a9e2f5b6c1d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a",
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
                "Name of a known patched source (the built-in catalog below, or an "
                "entry of your `rig_p2p_catalog`); it fixes url, branch and commit. With "
                "`catalog`, `url` may name a local mirror of that fork (air-gapped "
                "fleets); branch and pinned commit still come from the catalog and are "
                "verified after the fetch.",
                nullable=True,
                format_help="a catalog name like aikitoria-570.86.16 (`rigctl p2p list` "
                "shows them)",
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
    Field(
        "rig_p2p_catalog",
        "dict",
        "Your own P2P source catalog: named entries with `url`, `branch`, `commit` (full "
        "id), `driver_version` (the branch's version.mk), optionally `gpus` (what its "
        "README claims) and `note`, used like the built-in entries with "
        "`rig_p2p_source: {catalog: NAME}`. `rigctl p2p pin URL BRANCH --write FILE` "
        "writes them after reading the pinned commit's version.mk; `rigctl inventory "
        "check` validates every entry (file:line), `rigctl p2p list` shows them.",
        nullable=True,
        roles=("nvidia_driver",),
        section=_S_P2P,
        example={"mirror-580.105.08": {"url": "file:///srv/forks/aikitoria.git",
                                       "branch": "580.105.08-p2p",
                                       "commit": "c0ffee" * 6 + "c0ff",
                                       "driver_version": "580.105.08"}},
    ),
    Field(
        "rig_p2p_registry_dwords",
        "dict",
        "NVIDIA registry keys for the patched module, written as `NVreg_RegistryDwords` "
        "to /etc/modprobe.d/rigctl-nvidia-p2p.conf (flavor `p2p`; the patch's own defaults "
        "need none, a key set here overrides them). Checked against the NVIDIA base "
        "(`rig_driver_version`): `RMForceP2PType` changed meaning at 575 (before: 1 "
        "mailbox, 2 BAR1, 3 NVLink; from 575: 1 PCIe, 2 NVLink, 3 C2C) and "
        "`RMPcieP2PType` (0 mailbox, 1 BAR1, 2 auto) exists from 575 only.",
        nullable=True,
        roles=("nvidia_driver",),
        section=_S_P2P,
        example={"RMForceP2PType": 1, "RMPcieP2PType": 1},
    ),
    Field(
        "rig_p2p_min_link_fraction",
        "float",
        "The P2P verdict's bandwidth floor (rigctl verify, the report): every GPU pair's "
        "P2P copy must reach this fraction of what the pair's narrowest link carries per "
        "direction (PCIe generation x width of both GPUs' links; an NVLink bridge's bonded "
        "links for bridged pairs). A pair below it is `slow`: still a P2P pair for NCCL.",
        default=0.6,
        min=0.05,
        max=1.0,
        roles=("cuda",),  # the probe task warns; rigctl verify judges
        section=_S_P2P,
        example=0.7,
        notes="Published patched-driver figures reach about 78% of theory on Gen4 x16 "
        "4090s and about 90% on Gen5 x16 5090s; real DMA lands at 80-90%. 0.6 leaves room "
        "for CPU crossings and switches while still catching a riser at half width.",
    ),
    Field(
        "rig_p2p_min_gbps",
        "float",
        "An absolute P2P bandwidth floor in GB/s for every GPU pair, used instead of "
        "`rig_p2p_min_link_fraction`. Null: the fraction decides.",
        nullable=True,
        min=0.1,
        max=2000,
        roles=("cuda",),  # the probe task warns; rigctl verify judges
        section=_S_P2P,
        example=20.0,
    ),
    Field(
        "rig_p2p_pair_floors",
        "dict",
        "Per GPU pair floors that replace the rig's: a key names two GPUs by index or PCI bus "
        "id joined by `-` (`\"0-1\"`, `\"0000:01:00.0-0000:21:00.0\"`; both directions), the "
        "value is `{min_link_fraction: F}` or `{min_gbps: G}`.",
        default={},
        check=p2p_pair_floors_problem,
        value_field=Field("floor", "dict", "The pair's floor.", options=(
            Field("min_link_fraction", "float", "Fraction of the link's theory.", min=0.05, max=1.0),
            Field("min_gbps", "float", "Absolute floor in GB/s.", min=0.1, max=2000),
        ), check=p2p_floor_problem, example={"min_gbps": 12.0}),
        roles=("cuda",),  # the probe task warns; rigctl verify judges
        section=_S_P2P,
        example={"0-3": {"min_gbps": 12.0}},
    ),
    Field(
        "rig_kernel_hold",
        "bool",
        "Hold the kernel meta-packages of the rig's kernel (`linux-image-<flavour>`, "
        "`linux-headers-<flavour>`, Ubuntu's `linux-<flavour>`) so that upgrades and "
        "unattended-upgrades cannot bring in a kernel the driver does not build on (a P2P "
        "branch's NVIDIA base decides which: `rigctl p2p list`). A kernel installed anyway "
        "is built for by DKMS at the next run, or refused by the kernel gate naming it. "
        "False releases the holds rigctl set (and no other).",
        default=False,
        roles=("nvidia_driver",),
        section=_S_P2P,
        example=True,
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
        "rig_psu_watts",
        "int_or_list",
        "Rated output in watts of the rig's power supply, or a list with one rating per PSU. "
        "With it, `rigctl inventory check` refuses power limits whose sum plus "
        "`rig_platform_watts` exceeds `rig_psu_max_load_percent` of the PSUs' total, and "
        "`rigctl verify` checks the live limits (fail) and the GPUs' default limits (warn) "
        "against the same budget. Null: no power budget check.",
        nullable=True,
        check=psu_watts_problem,
        roles=("gpu_tuning",),
        section=_S_POWER,
        example=1600,
        notes="Several PSUs (`[1600, 1000]`) count as their sum. The budget needs "
        "`rig_gpu_count` and `rig_power_limit_w`; without a power limit the cards keep "
        "their defaults, which only the rig knows: verify warns about those.",
    ),
    Field(
        "rig_platform_watts",
        "int",
        "What the rest of the rig draws at full load in watts (CPU, board, memory, drives, "
        "fans), counted with the GPU power limits against the PSU budget. Null: not counted "
        "(the budget check says so).",
        nullable=True,
        min=0,
        max=5000,
        roles=("gpu_tuning",),
        section=_S_POWER,
        example=250,
    ),
    Field(
        "rig_psu_max_load_percent",
        "int",
        "How much of the PSUs' rated output (`rig_psu_watts`) the GPU power limits plus "
        "`rig_platform_watts` may add up to, in percent.",
        default=health.PSU_MAX_LOAD_PERCENT,
        min=50,
        max=120,
        roles=("gpu_tuning",),
        section=_S_POWER,
        example=90,
        notes="The default 90 keeps the sum of the GPUs' power limits (and the platform, "
        "when `rig_platform_watts` is set) at or below 90% of the PSUs' rating: a power limit "
        "is an average the card's controller holds, and 3090s spike far above it for "
        "milliseconds, so a PSU run at its rating trips or ages. The seed rig of 6 x 270 W "
        "on one 1600 W supply (1620 W against 1440 W) is refused with the highest limit "
        "that fits (240 W); an owner who knows the supply carries its rating continuously "
        "sets 100-105 here on purpose.",
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
        "rig_drain_units",
        "list",
        "systemd units that run the rig's GPU work (a training service, a job runner's "
        "agent). `rigctl fleet update` treats a rig with one of them active as busy and "
        "skips it (unless --force); when it updates the rig it stops them first and starts "
        "them again afterwards.",
        default=[],
        elements="str",
        roles=(),  # read by playbooks/fleet_rollout.yml (rigctl fleet update), no role
        section=_S_HOST,
        example=["trainer.service"],
        notes="GPU compute processes (`nvidia-smi --query-compute-apps`) make a rig busy "
        "too, whatever this list says.",
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
    # --- pull mode
    Field(
        "rig_pull_enabled",
        "bool",
        "Pull mode: `rigctl pull setup` installs ansible-core (the distribution's, 2.17 to "
        "2.19), git and rigctl's collection on the rig and a systemd timer that runs "
        "`ansible-pull` of your inventory repository at `rig_pull_commit`, converging the rig "
        "by itself every `rig_pull_interval`. False removes rigctl's pull units (the "
        "collection and ansible-core stay).",
        default=False,
        roles=("rig_pull",),
        section=_S_PULL,
        example=True,
    ),
    Field(
        "rig_pull_repo_url",
        "str",
        "Git URL of your inventory repository as the rig reaches it (`https://`, `ssh://`, "
        "`git@host:path`, `file://`). It must hold `rig_pull_inventory` and "
        "`rig_pull_playbook` (a playbook that imports `rigctl.rig.provision`). No "
        "credentials in the URL (they would show in the rig's process list and journal): "
        "use an SSH deploy key (`rig_pull_ssh_key_file`).",
        nullable=True,
        check=pull_url_problem,
        roles=("rig_pull",),
        section=_S_PULL,
        example="ssh://git@git.lab.example/rigs/inventory.git",
    ),
    Field(
        "rig_pull_commit",
        "str",
        "The full 40-character commit of the inventory repository the rig converges to. "
        "Pinned: the rig never follows a branch, so a push changes no rig until this "
        "variable changes and `rigctl pull setup` runs.",
        nullable=True,
        pattern=COMMIT_RE,
        format_help="the full 40-character commit id (`git rev-parse HEAD` prints it)",
        roles=("rig_pull",),
        section=_S_PULL,
        example="4f1c2b7e9d0a3c5e8f6b1a2d4c7e9f0b3a5c8d1e",
    ),
    Field(
        "rig_pull_playbook",
        "str",
        "Playbook in the repository that ansible-pull runs (relative path).",
        default="local.yml",
        pattern=r"^(?!/)(?!.*(^|/)\.\.(/|$))[\w./-]+\.ya?ml$",
        format_help="a relative path like local.yml",
        roles=("rig_pull",),
        section=_S_PULL,
        example="local.yml",
    ),
    Field(
        "rig_pull_inventory",
        "str",
        "Inventory in the repository (relative path: a file or a directory).",
        default="inventory",
        pattern=r"^(?!/)(?!.*(^|/)\.\.(/|$))[\w./-]+$",
        format_help="a relative path like inventory or inventory/hosts.yml",
        roles=("rig_pull",),
        section=_S_PULL,
        example="inventory",
    ),
    Field(
        "rig_pull_interval",
        "str",
        "How long after one pull run ends the next one starts (a systemd time span).",
        default="1h",
        pattern=r"^[1-9][0-9]*(s|min|h|d)$",
        format_help="a number and a unit: 30min, 1h, 1d",
        roles=("rig_pull",),
        section=_S_PULL,
        example="1h",
    ),
    Field(
        "rig_pull_known_hosts",
        "str",
        "known_hosts lines of the git server, required for `ssh://` and `git@host:` URLs: "
        "ansible-pull runs git with StrictHostKeyChecking=yes against exactly these keys.",
        nullable=True,
        roles=("rig_pull",),
        section=_S_PULL,
        example="git.lab.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI...",
    ),
    Field(
        "rig_pull_ssh_key_file",
        "str",
        "Path ON THE RIG of the SSH deploy key git uses for an ssh URL (rigctl never copies "
        "a private key: put it there with mode 0600).",
        nullable=True,
        pattern=r"^/\S+$",
        format_help="an absolute path like /etc/rigctl/pull_deploy_key",
        roles=("rig_pull",),
        section=_S_PULL,
        example="/etc/rigctl/pull_deploy_key",
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

# The variable that names the mirror of a source variable set to `mirror` (required then).
MIRROR_URLS: dict[str, str] = {
    "rig_driver_source": "rig_driver_mirror_url",
    "rig_cuda_source": "rig_cuda_mirror_url",
    "rig_nccl_source": "rig_nccl_mirror_url",
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
