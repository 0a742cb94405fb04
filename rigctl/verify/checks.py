"""How a verification check says what is wrong: expected, found, how to fix.

Outcomes a check can end with (decided here and in rigctl.verify.run, not per test):

- ``passed``: it held on real hardware (or on a part of the rig that is never simulated);
- ``simulated``: it held, but it read the simulated GPU layer of a lab rig (the check is
  marked ``@reads_gpu``); shown as ``passed (simulated)``, counted apart from real passes;
- ``warn``: it did not hold, and the rig's policy says warn (``expect(..., warn=True)``);
  counted, shown, and failing the run only with ``rigctl verify --strict``;
- ``recorded``: shown as ``recorded, not observed``: the state agrees with what rigctl
  recorded it applied, but the hardware cannot be asked (e.g. locked clocks on drivers that
  cannot read them back): neither a pass nor a failure
  (:func:`recorded_not_observed`);
- ``failed`` / ``error``: it did not hold / the check itself could not run;
- ``skipped``: it does not apply to this rig (e.g. needs real GPUs on a lab rig);
- ``unreachable`` / ``refused``: the whole rig, one result (no connection, or refused before
  any check ran).
"""

from __future__ import annotations

import json
import re

import pytest


def reads_gpu(check):
    """Decorator for a check that reads the GPU layer (nvidia-smi, GPU sysfs, the IOMMU/PCI
    view of the GPUs, GPU services): on a rig whose gpu_view is ``simulated`` its pass is
    reported as ``passed (simulated)``. The marker (``reads_gpu``) is registered by the
    suites' conftest, which records the rig's gpu_view for the check."""
    return pytest.mark.reads_gpu(check)


MESSAGE_LIMIT = 300


class CheckFailed(AssertionError):
    def __init__(self, what: str, expected, found, fix: str):
        self.what = what
        self.expected = expected
        self.found = found
        self.fix = fix
        super().__init__(f"{what}\nexpected: {expected}\nfound: {found}\nfix: {fix}")

    def as_dict(self) -> dict:
        return {
            "what": self.what,
            "expected": one_line(self.expected, 1000),
            "found": one_line(self.found, 1000),
            "fix": self.fix,
        }


class CheckWarned(CheckFailed):
    """A check that did not hold where the rig's policy is ``warn``: outcome ``warn``."""


class RigUnreachable(Exception):
    """The connection to the rig was lost: the rig's results collapse to ``unreachable``."""

    def __init__(self, message: str):
        self.message = one_line(message)
        super().__init__(self.message)


def expect(ok: bool, what: str, *, expected, found, fix: str, warn: bool = False) -> None:
    """Fail the current check with a structured message unless ``ok``; with ``warn`` (the
    rig's policy is warn) it ends as a visible ``warn`` instead of a failure."""
    if not ok:
        raise (CheckWarned if warn else CheckFailed)(what, expected, found, fix)


def skip_unless_real_gpu(facts: dict, what: str) -> None:
    """Checks that need real GPUs are skipped, never passed, on simulated ones."""
    if facts["gpu_view"] == "simulated":
        profile = (facts.get("simulation") or {}).get("profile")
        pytest.skip(f"GPUs are simulated (lab profile {profile}): {what} needs real hardware")
    if facts["gpu_view"] == "none":
        pytest.skip(f"no NVIDIA GPU on PCI: {what} needs one")


RECORDED_PREFIX = "recorded, not observed:"


def recorded_not_observed(what: str) -> None:
    """End the current check as ``recorded, not observed``: what rigctl recorded agrees with
    the desired state, but the GPUs cannot say whether it holds. Never a pass."""
    pytest.skip(f"{RECORDED_PREFIX} {what}")


def one_line(text, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` as one line of at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


# What ssh and Ansible say when the rig cannot be reached (or the connection dropped).
_SSH_ERROR = re.compile(
    r"(ssh: connect to host [^\n\"'\\]*"
    r"|ssh: Could not resolve hostname [^\n\"'\\]*"
    r"|kex_exchange_identification: [^\n\"'\\]*"
    r"|Connection timed out during banner exchange[^\n\"'\\]*"
    r"|Connection closed by [^\n\"'\\]*"
    r"|Connection reset by [^\n\"'\\]*"
    r"|Host key verification failed[^\n\"'\\]*"
    r"|Timeout, server [^\n\"'\\]* not responding[^\n\"'\\]*"
    r"|Shared connection to [^\n\"'\\]* closed"
    r"|mux_client_[^\n\"'\\]*"
    r"|Control socket connect[^\n\"'\\]*"
    r"|Broken pipe"
    r"|Permission denied \(publickey[^\n\"'\\]*)"
)
_UNREACHABLE_MARKERS = (
    "UNREACHABLE!",
    "exit_status=255",
    '"unreachable": true',
    "'unreachable': True",
    "Data could not be sent to remote host",
    "Failed to connect to the host via ssh",
)


def connection_error(text) -> str | None:
    """The one-line SSH error when ``text`` (an exception or its text: testinfra's
    CommandResult with exit status 255, Ansible's ``UNREACHABLE!``) says the rig could
    not be reached; None when it is about something else."""
    if isinstance(text, RigUnreachable):
        return text.message
    if isinstance(text, RuntimeError) and text.args and getattr(text.args[0], "rc", None) == 255:
        result = text.args[0]  # testinfra's ssh backend: ssh itself failed
        err = str(getattr(result, "stderr", "") or "")
        match = _SSH_ERROR.search(err)
        return one_line(match.group(0) if match else (err.strip() or "ssh exited with 255"))
    raw = str(text)
    if not any(m in raw for m in _UNREACHABLE_MARKERS):
        return None
    match = _SSH_ERROR.search(raw.replace("\\n", "\n").replace("\\r", "\n"))
    if match:
        return one_line(match.group(0).rstrip(" .,"))
    msg = re.search(r'"msg": "((?:[^"\\]|\\.)*)"', raw) or re.search(r"msg: '((?:[^']|'')*)'", raw)
    return one_line(msg.group(1) if msg else "the rig stopped answering over SSH")


# --- report data attached to a rig's results -------------------------------------------

#: What the suites attached in this process (one rig per ``rigctl verify`` worker).
_ATTACHED: dict = {}


def attach(key: str, value) -> None:
    """Attach report data to the current rig's results: the one way a suite hands data to
    ``rigctl verify --report`` (HTML/Markdown) and ``--json``.

    ``key`` names the data (``[a-z][a-z0-9_]*``); ``value`` must be JSON-serializable
    (dicts, lists, strings, numbers, booleans, None). The runner collects what the checks of
    one rig attached and carries it per rig: ``VerifyResult.rigs[HOST]["report"][key]``,
    in ``--json`` as ``hosts.HOST.report.KEY``. Attaching under a key again merges: a list
    extends the list already there, a dict updates the dict there (key by key), anything
    else replaces it. Call it from a check or a fixture, before or after ``expect``: data
    attached by a check that then fails is kept (the report shows why it failed).

    Keys in use (document a new one here):

    - ``gpus``: the rig's GPUs as the GPU facts list them (gpumodel.build: index, bus id,
      name, link, BAR1, power limits, clocks) -- attached by the tuning suite;
    - ``p2p``: the P2P verdict (rigctl.core.p2pverdict.judge: per ordered pair GB/s, % of
      link theory, verdict) and its evidence source -- attached by the P2P suite;
    - ``nccl``: what /etc/nccl.conf says and which evidence decided its P2P setting;
    - ``health``: a list of findings, each ``{"check", "gpu", "severity", "evidence",
      "fix"}`` (severity ``fail``/``warn``/``info``; ``gpu`` ``{"index", "bus_id"}``, a bus
      id or an index, None for the whole rig) -- attached by the health suite (lists extend).

    Raises ``ValueError`` for a bad key and ``TypeError`` for a value JSON cannot hold.
    """
    if not isinstance(key, str) or not re.match(r"^[a-z][a-z0-9_]*$", key):
        raise ValueError(f"report key {key!r}: use lower-case letters, digits and _")
    try:
        value = json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"report data under {key!r} is not JSON-serializable: {exc}") from None
    old = _ATTACHED.get(key)
    if isinstance(old, list) and isinstance(value, list):
        old.extend(value)
    elif isinstance(old, dict) and isinstance(value, dict):
        old.update(value)
    else:
        _ATTACHED[key] = value


def attached() -> dict:
    """Everything attached in this process so far (a copy)."""
    return json.loads(json.dumps(_ATTACHED))


def clear_attached() -> None:
    _ATTACHED.clear()
