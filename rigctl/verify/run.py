"""Run the shipped testinfra suites against rigs, one pytest process per rig in parallel,
and collect one result per rig.

Each rig gets its own worker process (``python -m rigctl.verify.run --worker``), at most
``workers`` at once: a slow, hung or unreachable rig never delays or hides another rig's
results. A worker first opens a fresh SSH connection (no shared master, ``ConnectTimeout``):
a rig that does not answer is one ``unreachable`` result with the SSH error in one line. A
connection lost during the run stops that rig's worker and collapses its results to one
``unreachable`` result; a worker that outlives the per-rig deadline is killed and reported
the same way.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SUITES_DIR = Path(__file__).resolve().parent / "suites"
_PARAM = re.compile(r"\[(?:ansible://)?([^\]]+)\]$")

DEFAULT_CONNECT_TIMEOUT = 10
DEFAULT_RIG_TIMEOUT = 900
MAX_WORKERS = 8

#: Every outcome, in report order.
OUTCOMES = (
    "passed",
    "simulated",
    "warn",
    "recorded",
    "failed",
    "error",
    "skipped",
    "unreachable",
    "refused",
)
HOST_OUTCOMES = ("unreachable", "refused")
FAILING = ("failed", "error", "unreachable", "refused")


def _one_line(text, limit: int = 300) -> str:
    from rigctl.verify.checks import one_line

    return one_line(text, limit)


@dataclass
class Check:
    host: str
    name: str
    module: str
    outcome: str  # one of OUTCOMES
    message: str = ""
    details: dict | None = None
    duration: float = 0.0

    def as_dict(self):
        data = {
            "name": self.name,
            "suite": self.module,
            "outcome": self.outcome,
            "message": self.message,
        }
        if self.details:
            data["details"] = self.details
        return data


@dataclass
class VerifyResult:
    checks: list[Check] = field(default_factory=list)
    exit_status: int = 0
    #: per host: {"gpu_view": real|simulated|none|unknown, "profile": lab profile or None,
    #: "report": {key: data} attached by the suites (rigctl.verify.checks.attach)}
    rigs: dict[str, dict] = field(default_factory=dict)
    strict: bool = False

    def add_host_result(self, host: str, outcome: str, message: str) -> Check:
        """One result for a whole rig that was not verified (``unreachable``: no connection;
        ``refused``: turned away before any check ran, e.g. an unknown host key)."""
        if outcome not in HOST_OUTCOMES:
            raise ValueError(f"host outcome must be one of {HOST_OUTCOMES}, not {outcome!r}")
        self.checks = [c for c in self.checks if c.host != host]
        check = Check(host=host, name="connection", module="rig", outcome=outcome,
                      message=_one_line(message) or outcome)
        self.checks.append(check)
        self.rigs.setdefault(host, {"gpu_view": "unknown", "profile": None})
        return check

    def hosts(self) -> dict[str, list[Check]]:
        out: dict[str, list[Check]] = {}
        for check in self.checks:
            out.setdefault(check.host, []).append(check)
        return out

    def host_outcome(self, host: str) -> str | None:
        """``unreachable``/``refused`` when the rig is one such result, else None."""
        checks = self.hosts().get(host, [])
        if len(checks) == 1 and checks[0].outcome in HOST_OUTCOMES:
            return checks[0].outcome
        return None

    def report(self, host: str) -> dict:
        """What the suites attached for ``host`` (``checks.attach``), ``{}`` when nothing."""
        return (self.rigs.get(host) or {}).get("report") or {}

    def gpu_view(self, host: str) -> str:
        return (self.rigs.get(host) or {}).get("gpu_view") or "unknown"

    @staticmethod
    def counts(checks) -> dict[str, int]:
        return {k: sum(1 for c in checks if c.outcome == k) for k in OUTCOMES}

    def _failing(self) -> tuple[str, ...]:
        return FAILING + (("warn",) if self.strict else ())

    def host_ok(self, host: str) -> bool:
        return not any(c.outcome in self._failing() for c in self.hosts().get(host, []))

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not any(c.outcome in self._failing() for c in self.checks)

    def as_dict(self):
        hosts = {}
        for host, checks in self.hosts().items():
            counts = self.counts(checks)
            hosts[host] = {
                **counts,
                "gpu_view": self.gpu_view(host),
                "simulation_profile": (self.rigs.get(host) or {}).get("profile"),
                "result": self.host_outcome(host) or ("ok" if self.host_ok(host) else "failed"),
                "ok": self.host_ok(host),
                "checks": [c.as_dict() for c in checks],
                # what the suites attached for the report (rigctl.verify.checks.attach)
                "report": (self.rigs.get(host) or {}).get("report") or {},
            }
        return {"ok": self.ok, "strict": self.strict, "totals": self.counts(self.checks),
                "hosts": hosts}

    def write_junit(self, path: str) -> None:
        """JUnit XML: one testsuite per rig (properties gpu_view, simulation_profile), one
        testcase per check (properties outcome, gpu_view; expected/found on failures).
        ``simulated`` passes are passes; ``warn`` is a failure only with --strict, else a
        pass carrying outcome=warn; ``unreachable``/``refused`` are one error per rig."""
        root = ET.Element("testsuites", name="rigctl verify")
        totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for host, checks in self.hosts().items():
            suite = ET.SubElement(root, "testsuite", name=host)
            props = ET.SubElement(suite, "properties")
            ET.SubElement(props, "property", name="gpu_view", value=self.gpu_view(host))
            profile = (self.rigs.get(host) or {}).get("profile")
            if profile:
                ET.SubElement(props, "property", name="simulation_profile", value=profile)
            n = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
            for c in checks:
                n["tests"] += 1
                case = ET.SubElement(suite, "testcase", classname=f"{c.module}.{host}",
                                     name=c.name, time=f"{c.duration:.3f}")
                cprops = ET.SubElement(case, "properties")
                ET.SubElement(cprops, "property", name="outcome", value=c.outcome)
                ET.SubElement(cprops, "property", name="gpu_view", value=self.gpu_view(host))
                for key in ("expected", "found", "fix"):
                    if c.details and c.details.get(key):
                        ET.SubElement(cprops, "property", name=key, value=str(c.details[key]))
                if c.outcome in ("failed",) or (c.outcome == "warn" and self.strict):
                    n["failures"] += 1
                    ET.SubElement(case, "failure", message=c.message, type=c.outcome).text = (
                        _details_text(c)
                    )
                elif c.outcome in ("error", "unreachable", "refused"):
                    n["errors"] += 1
                    ET.SubElement(case, "error", message=c.message, type=c.outcome).text = (
                        _details_text(c)
                    )
                elif c.outcome == "skipped":
                    n["skipped"] += 1
                    ET.SubElement(case, "skipped", message=c.message)
                elif c.outcome in ("warn", "simulated", "recorded") and c.message:
                    ET.SubElement(case, "system-out").text = f"{c.outcome}: {_details_text(c)}"
            for k, v in n.items():
                suite.set(k, str(v))
                totals[k] += v
        for k, v in totals.items():
            root.set(k, str(v))
        ET.indent(root)
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _details_text(c: Check) -> str:
    lines = [c.message]
    if c.details:
        lines += [f"{k}: {c.details[k]}" for k in ("expected", "found", "fix") if c.details.get(k)]
    return "\n".join(lines)


# --- in the worker: pytest plugin -------------------------------------------------------


class _Collector:
    """pytest plugin collecting one Check per test; stops the session when the
    connection to the rig is lost (the parent collapses the rig to ``unreachable``)."""

    def __init__(self, progress: str | None = None):
        self.result = VerifyResult()
        self._by_id: dict[str, Check] = {}
        self.lost: str | None = None
        self.gpu_view: str | None = None
        self._progress = progress

    def pytest_runtest_logstart(self, nodeid, location):
        if self._progress:
            with open(self._progress, "a") as handle:
                handle.write(nodeid + "\n")

    def pytest_runtest_setup(self, item):
        if self.lost:
            pytest.skip(f"connection lost: {self.lost}")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        excinfo = call.excinfo
        props = dict(item.user_properties)  # report.user_properties holds them too
        if props.get("gpu_view"):
            self.gpu_view = props["gpu_view"]
        if excinfo is None:
            return
        from rigctl.verify.checks import CheckFailed, CheckWarned, connection_error

        exc = excinfo.value
        if isinstance(exc, CheckFailed):
            report.user_properties.append(("check", exc.as_dict()))
            if isinstance(exc, CheckWarned):
                report.user_properties.append(("warned", True))
            return
        lost = connection_error(exc)
        if lost is None and not isinstance(exc, (AssertionError,)):
            lost = connection_error(excinfo.exconly())
        if lost is None:
            lost = connection_error(str(getattr(report, "longrepr", "")))
        if lost:
            self.lost = self.lost or lost
            report.user_properties.append(("lost", lost))
            item.session.shouldstop = f"connection lost: {lost}"

    def pytest_runtest_logreport(self, report):
        nodeid = report.nodeid
        match = _PARAM.search(nodeid)
        host = match.group(1) if match else "local"
        func = nodeid.split("::")[-1].split("[")[0]
        module = nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
        check = self._by_id.get(nodeid)
        if check is None:
            check = Check(host=host, name=func, module=module, outcome="passed")
            self._by_id[nodeid] = check
            self.result.checks.append(check)
        check.duration += getattr(report, "duration", 0.0) or 0.0
        props = dict(report.user_properties)
        details = props.get("check")
        if report.skipped:
            from rigctl.verify.checks import RECORDED_PREFIX

            check.outcome = "skipped"
            reason = (
                report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            )
            check.message = _one_line(reason.removeprefix("Skipped: "))
            if check.message.startswith(RECORDED_PREFIX):  # checks.recorded_not_observed
                check.outcome = "recorded"
        elif report.failed:
            if props.get("warned"):
                check.outcome = "warn"
            else:
                check.outcome = "failed" if report.when == "call" else "error"
            if details:
                check.details = details
                check.message = _one_line(details["what"])
            elif props.get("lost"):
                check.message = props["lost"]
            else:
                crash = getattr(report.longrepr, "reprcrash", None)
                text = crash.message if crash else str(report.longrepr)
                check.message = _first_line(text)
        elif report.when == "call" and report.passed and props.get("reads_gpu"):
            if (props.get("gpu_view") or self.gpu_view) == "simulated":
                check.outcome = "simulated"


def _first_line(text: str) -> str:
    """A failure's message as one line: the first meaningful line, trimmed."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    first = lines[0] if lines else "failed (no message)"
    first = first.removeprefix("Failed: ")
    if "CommandResult(" in first:  # never the raw object
        first = first.split("CommandResult(")[0].rstrip(" :") or "a command on the rig failed"
    return _one_line(first)


# --- in the worker: reachability, then the suites ---------------------------------------


def keepalive_args(connect_timeout: int) -> str:
    """SSH keepalives so that a dead or frozen rig ends its connection after about
    ``connect_timeout`` seconds (a busy rig still answers them)."""
    interval = max(2, int(connect_timeout) // 3)
    return f"-o ServerAliveInterval={interval} -o ServerAliveCountMax=3"


def _config_ssh_args(env: dict) -> str:
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(env.get("ANSIBLE_CONFIG") or "")
    except configparser.Error:
        return ""
    return parser.get("ssh_connection", "ssh_args", fallback="")


def _probe(host: str, inventory: str, connect_timeout: int) -> str | None:
    """Open a fresh SSH connection to the rig the way the suites do (inventory user, port,
    key, known_hosts), bypassing any shared master connection, and run `true`. The SSH
    error in one line when it fails, else None."""
    from testinfra.utils.ansible_runner import AnsibleRunner

    from rigctl.verify.checks import connection_error, one_line

    runner = AnsibleRunner.get_runner(inventory)
    ssh_host = runner.get_host(host)
    if ssh_host is None:  # local connection or similar: nothing to probe
        return None
    backend = ssh_host.backend
    if hasattr(backend, "timeout"):
        backend.timeout = int(connect_timeout)  # every later ssh call of the suites too
    if hasattr(backend, "ssh_extra_args"):
        # A rig that stops answering mid-run drops the (shared) master connection within
        # about the connect timeout; ssh takes the first value of an option.
        backend.ssh_extra_args = f"{keepalive_args(connect_timeout)} {backend.ssh_extra_args or ''}"
    if not hasattr(backend, "_build_ssh_command"):
        return None
    cmd, cmd_args = backend._build_ssh_command("true")
    # ssh takes the first value of an option: ours go before the inventory's.
    fresh = [
        "-o ControlMaster=no",
        "-o ControlPath=none",
        f"-o ConnectTimeout={int(connect_timeout)}",
        "-o BatchMode=yes",
    ]
    at = cmd.index("ssh") + 1
    cmd[at:at] = fresh
    command = backend.quote(" ".join(cmd), *cmd_args)
    try:
        proc = subprocess.run(command, shell=True, capture_output=True, text=True,
                              timeout=connect_timeout + 5)
    except subprocess.TimeoutExpired:
        return f"no SSH answer within {connect_timeout} s"
    if proc.returncode == 255:
        err = proc.stderr.strip()
        return connection_error(f"exit_status=255 {err}") or one_line(err or "ssh exited with 255")
    return None


def _seed_inventory(inventory: str, listing: str | None) -> None:
    """Hand testinfra the parsed inventory that rigctl read once for every worker (the
    same `ansible-inventory --list` testinfra would run itself, once per rig)."""
    if not listing:
        return
    from testinfra.utils.ansible_runner import AnsibleRunner

    try:
        with open(listing) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return
    AnsibleRunner.get_runner(inventory).__dict__["inventory"] = data


def _list_inventory(inventory: str, env: dict, dest: Path) -> str | None:
    env = dict(env, ANSIBLE_VERBOSITY="0")
    try:
        proc = subprocess.run(["ansible-inventory", "--list", "-i", inventory], env=env,
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None  # each worker runs it itself and reports what it says
    try:
        json.loads(proc.stdout)
    except ValueError:
        return None
    dest.write_text(proc.stdout)
    return str(dest)


def _worker(spec: dict) -> int:
    host, inventory, out = spec["host"], spec["inventory"], spec["out"]
    _seed_inventory(inventory, spec.get("inventory_json"))
    data: dict = {"host": host, "checks": [], "lost": None, "gpu_view": None, "rc": 0}
    lost = _probe(host, inventory, spec["connect_timeout"])
    if lost:
        data["lost"] = lost
    else:
        collector = _Collector(progress=spec.get("progress"))
        args = [
            str(SUITES_DIR),
            "-c", str(SUITES_DIR / "pytest.ini"),
            "--rootdir", str(SUITES_DIR),
            f"--hosts=ansible://{host}",
            f"--ansible-inventory={inventory}",
            "-p", "no:cacheprovider",
            "-W", "ignore::pytest.PytestAssertRewriteWarning",  # testinfra: imported by _probe
        ]
        args += ["-v", "--no-header", "-rN"] if spec.get("verbose") else ["-p", "no:terminal"]
        if spec.get("keyword"):
            args += ["-k", spec["keyword"]]
        rc = int(pytest.main(args, plugins=[collector]))
        data["rc"] = rc
        data["lost"] = collector.lost
        data["gpu_view"] = collector.gpu_view
        try:
            conftest = sys.modules.get("conftest")
            facts = getattr(conftest, "_FACTS", {}).get(host) if conftest else None
        except Exception:
            facts = None
        if facts:
            data["gpu_view"] = facts.get("gpu_view")
            data["profile"] = (facts.get("simulation") or {}).get("profile")
        data["checks"] = [
            {**c.as_dict(), "host": c.host, "duration": c.duration}
            for c in collector.result.checks
        ]
        from rigctl.verify.checks import attached

        data["report"] = attached()  # what the checks attached (checks.attach)
    tmp = out + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle)
    os.replace(tmp, out)
    return 0


# --- in rigctl: one worker per rig, in parallel -----------------------------------------


def _last_started(progress: Path) -> str | None:
    try:
        lines = progress.read_text().splitlines()
    except OSError:
        return None
    if not lines:
        return None
    return lines[-1].split("::")[-1].split("[")[0]


def _run_one(host, inventory, workdir: Path, *, env, keyword, verbose, connect_timeout,
             rig_timeout, stop: threading.Event, listing: str | None = None) -> dict:
    out = workdir / f"{host}.json"
    progress = workdir / f"{host}.progress"
    log = workdir / f"{host}.log"
    spec = {"host": host, "inventory": inventory, "out": str(out), "progress": str(progress),
            "keyword": keyword, "verbose": verbose, "connect_timeout": connect_timeout,
            "inventory_json": listing}
    started = time.monotonic()
    with open(log, "w") as log_handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rigctl.verify.run", "--worker", json.dumps(spec)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr if verbose else log_handle,
            stderr=sys.stderr if verbose else subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = started + rig_timeout
        while True:
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() < deadline and not stop.is_set():
                    continue
                _kill(proc)
                if stop.is_set():
                    return {"host": host, "error": "verification interrupted"}
                last = _last_started(progress)
                where = f" (last check started: {last})" if last else ""
                return {"host": host, "lost": f"no answer from the rig within the {rig_timeout:g} s "
                        f"per-rig deadline{where}: it stopped responding mid-run"}
    try:
        data = json.loads(out.read_text())
    except (OSError, ValueError):
        tail = ""
        try:
            tail = " | ".join(log.read_text().strip().splitlines()[-3:])
        except OSError:
            pass
        return {"host": host, "error": f"the verification worker exited {proc.returncode} "
                f"without a result: {tail or 'no output'}"}
    return data


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _merge(result: VerifyResult, data: dict) -> None:
    host = data["host"]
    result.rigs[host] = {"gpu_view": data.get("gpu_view") or "unknown",
                         "profile": data.get("profile"), "report": data.get("report") or {}}
    if data.get("lost"):
        result.add_host_result(host, "unreachable", data["lost"])
        return
    if data.get("error"):
        result.checks.append(Check(host=host, name="verification", module="rig",
                                   outcome="error", message=_one_line(data["error"])))
        return
    for c in data.get("checks", []):
        result.checks.append(Check(host=c["host"], name=c["name"], module=c["suite"],
                                   outcome=c["outcome"], message=c.get("message", ""),
                                   details=c.get("details"), duration=c.get("duration", 0.0)))
    rc = int(data.get("rc") or 0)
    if rc == 5 and not data.get("checks"):
        result.exit_status = result.exit_status or 5
    elif rc not in (0, 1, 5):
        result.checks.append(Check(host=host, name="verification", module="rig", outcome="error",
                                   message=f"the suites did not run cleanly (pytest exit {rc})"))


def run_suites(
    hosts: list[str],
    inventory: str,
    *,
    junit: str | None = None,
    verbose: int = 0,
    keyword: str | None = None,
    env: dict[str, str] | None = None,
    connect_timeout: int | None = None,
    rig_timeout: float = DEFAULT_RIG_TIMEOUT,
    workers: int | None = None,
    strict: bool = False,
    result: VerifyResult | None = None,
    order: list[str] | None = None,
    record: bool = False,
) -> VerifyResult:
    """Run every suite against ``hosts`` (names in ``inventory``) over SSH, one worker
    process per rig, at most ``workers`` (default min(rigs, 8)) at once. ``result`` may
    already hold per-rig results (``add_host_result``) for rigs not to run; ``order``: the
    order of rigs in the report (default ``hosts``). ``connect_timeout``: seconds (default
    $ANSIBLE_TIMEOUT of ``env``, else 10)."""
    result = result if result is not None else VerifyResult()
    result.strict = strict
    inventory = str(Path(inventory).resolve())
    run_env = dict(os.environ)
    run_env.update(env or {})
    # testinfra runs `ansible` and `ansible-inventory`: the ones next to this Python.
    run_env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + run_env.get("PATH", "")
    if connect_timeout is None:
        try:
            connect_timeout = int(run_env.get("ANSIBLE_TIMEOUT") or DEFAULT_CONNECT_TIMEOUT)
        except ValueError:
            connect_timeout = DEFAULT_CONNECT_TIMEOUT
    run_env["ANSIBLE_TIMEOUT"] = str(int(connect_timeout))
    # Ansible's own ssh (the suites' modules): keepalives first, and no retries (a rig
    # that dropped is reported unreachable at once instead of after 3 connect timeouts).
    base_args = run_env.get("ANSIBLE_SSH_ARGS")
    if base_args is None:
        base_args = _config_ssh_args(run_env)
    run_env["ANSIBLE_SSH_ARGS"] = f"{keepalive_args(connect_timeout)} {base_args}".strip()
    run_env["ANSIBLE_SSH_RETRIES"] = "0"
    run_env["RIGCTL_VERIFY_WORKER"] = "1"
    run_env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    todo = [h for h in hosts if h not in result.hosts()]
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="rigctl-verify-") as tmp:
        workdir = Path(tmp)
        if todo:
            listing = _list_inventory(inventory, run_env, workdir / "inventory.json") if (
                len(todo) > 2) else None
            pool = ThreadPoolExecutor(max_workers=max(1, min(len(todo), workers or MAX_WORKERS)))
            futures = [
                pool.submit(_run_one, h, inventory, workdir, env=run_env, keyword=keyword,
                            verbose=verbose, connect_timeout=connect_timeout,
                            rig_timeout=rig_timeout, stop=stop, listing=listing)
                for h in todo
            ]
            try:
                datas = [f.result() for f in futures]
            except BaseException:  # Ctrl-C: stop every worker, then re-raise
                stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown()
            for data in datas:
                _merge(result, data)
    order = {h: i for i, h in enumerate(order or hosts)}
    result.checks.sort(key=lambda c: order.get(c.host, len(order)))  # stable: suite order kept
    if junit:
        result.write_junit(junit)
    if record:  # `rigctl verify`: each rig's last result, for `rigctl fleet status`
        from rigctl.fleet.records import record_verify

        record_verify(result, inventory)
    return result


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker(json.loads(sys.argv[2])))
    sys.exit("usage: python -m rigctl.verify.run --worker SPEC (started by `rigctl verify`)")
