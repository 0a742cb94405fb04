"""Run the shipped testinfra suites in-process and collect a per-rig result."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SUITES_DIR = Path(__file__).resolve().parent / "suites"
_PARAM = re.compile(r"\[(?:ansible://)?([^\]]+)\]$")


@dataclass
class Check:
    host: str
    name: str
    module: str
    outcome: str  # passed | failed | skipped | error
    message: str = ""
    details: dict | None = None

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

    def hosts(self) -> dict[str, list[Check]]:
        out: dict[str, list[Check]] = {}
        for check in self.checks:
            out.setdefault(check.host, []).append(check)
        return out

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not any(
            c.outcome in ("failed", "error") for c in self.checks
        )

    def as_dict(self):
        hosts = {}
        for host, checks in self.hosts().items():
            counts = {
                k: sum(1 for c in checks if c.outcome == k)
                for k in ("passed", "failed", "skipped", "error")
            }
            hosts[host] = {
                **counts,
                "ok": counts["failed"] == 0 and counts["error"] == 0,
                "checks": [c.as_dict() for c in checks],
            }
        return {"ok": self.ok, "hosts": hosts}


class _Collector:
    def __init__(self):
        self.result = VerifyResult()
        self._by_id: dict[str, Check] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        excinfo = call.excinfo
        if excinfo is not None:
            from rigctl.verify.checks import CheckFailed

            if isinstance(excinfo.value, CheckFailed):
                report.user_properties.append(("check", excinfo.value.as_dict()))

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
        details = dict(report.user_properties).get("check")
        if report.skipped:
            check.outcome = "skipped"
            reason = (
                report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            )
            check.message = reason.removeprefix("Skipped: ")
        elif report.failed:
            check.outcome = "failed" if report.when == "call" else "error"
            if details:
                check.details = details
                check.message = details["what"]
            else:
                crash = getattr(report.longrepr, "reprcrash", None)
                check.message = crash.message if crash else str(report.longrepr)[-2000:]


def run_suites(
    hosts: list[str],
    inventory: str,
    *,
    junit: str | None = None,
    verbose: int = 0,
    keyword: str | None = None,
    env: dict[str, str] | None = None,
) -> VerifyResult:
    """Run every suite against ``hosts`` (names in ``inventory``) over SSH."""
    collector = _Collector()
    args = [
        str(SUITES_DIR),
        "-c",
        str(SUITES_DIR / "pytest.ini"),
        "--rootdir",
        str(SUITES_DIR),
        "--hosts=" + ",".join(f"ansible://{h}" for h in hosts),
        "--ansible-inventory=" + str(Path(inventory).resolve()),
        "-p",
        "no:cacheprovider",
    ]
    # Our own table reports the results; pytest's terminal output only with -v (on stderr).
    args += ["-v", "--no-header", "-rN"] if verbose else ["-p", "no:terminal"]
    if junit:
        args.append(f"--junitxml={junit}")
    if keyword:
        args += ["-k", keyword]
    saved = dict(os.environ)
    # testinfra runs `ansible` and `ansible-inventory`: the ones next to this Python.
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    os.environ.update(env or {})
    os.environ["PATH"] = path
    try:
        with contextlib.redirect_stdout(sys.stderr):
            rc = pytest.main(args, plugins=[collector])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    collector.result.exit_status = int(rc) if int(rc) not in (0, 1) else 0
    if int(rc) == 5:  # no tests collected
        collector.result.exit_status = 5
    return collector.result
