"""Work done on every rig at once, and its errors reported together."""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from rigctl.errors import RigctlError

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _parallel(fn, items, workers: int) -> list[Exception]:
    errors: list[Exception] = []
    if not items:
        return errors
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as ex:
        futs = [ex.submit(fn, it) for it in items]
        for f in futs:
            try:
                f.result()
            except Exception as exc:  # collected and reported together
                errors.append(exc)
    return errors


def _raise_collected(errors: list[Exception], what: str) -> None:
    if not errors:
        return
    if len(errors) == 1:
        raise errors[0]
    lines = [f"{what}: {len(errors)} rigs failed"]
    fixes = []
    for e in errors:
        lines.append(f"  - {getattr(e, 'message', str(e))}")
        if getattr(e, "fix", None) and e.fix not in fixes:
            fixes.append(e.fix)
    raise RigctlError("\n".join(lines), fix="; ".join(fixes[:2]) or None)
