"""Ansible's host patterns, without Ansible: the host keys of an inventory file (ranges
``rig-[1:4]``, ``[01:10]``, ``[a:c]``, and a port ``rig-a:2222``) and the split of a
``--limit`` pattern into its terms (what the terms select: ``Inventory.select``)."""

from __future__ import annotations

import re
import string


def _split_port(pattern: str) -> tuple[str, int | None]:
    m = re.match(r"^\[([0-9a-fA-F:.]+)\]:(\d+)$", pattern)  # [ipv6]:port
    if m:
        return m.group(1), int(m.group(2))
    outside = re.sub(r"\[[^\]]*\]", "", pattern)
    if outside.count(":") == 1:
        m = re.match(r"^(.*):(\d+)$", pattern)
        if m and m.group(1):
            return m.group(1), int(m.group(2))
    return pattern, None


def _range_items(spec: str) -> list[str]:
    """The items of the inside of one ``[begin:end(:step)]`` range, by Ansible's rules:
    letters a-z/A-Z or whole numbers, an empty begin is 0, a zero-padded begin needs an end
    of the same width. Raises ValueError saying what is wrong (also for a range that
    expands to nothing or a step that is not positive, which Ansible takes silently)."""
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(f"[{spec}] is not a range (write [begin:end] or [begin:end:step])")
    begin, end = bounds[0] or "0", bounds[1]
    if not end:
        raise ValueError(f"range [{spec}] has no end")
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not step_text.isdigit() or int(step_text) == 0:
        raise ValueError(f"range [{spec}]: the step must be a whole number above 0")
    step = int(step_text)
    width = 0
    if begin.startswith("0") and len(begin) > 1:
        width = len(begin)
        if len(end) != width:
            raise ValueError(f"range [{spec}]: a zero-padded begin needs an end of the same "
                             f"width ({begin}:{end.zfill(width)})")
    letters = string.ascii_letters
    if len(begin) == 1 and len(end) == 1 and begin in letters and end in letters:
        lo, hi = letters.index(begin), letters.index(end)
        if lo > hi:
            raise ValueError(f"range [{spec}] goes backwards")
        return list(letters[lo:hi + 1:step])
    if not (begin.isdigit() and end.isdigit()):
        raise ValueError(f"range [{spec}]: begin and end must both be numbers or both be "
                         "single letters")
    if int(begin) > int(end):
        raise ValueError(f"range [{spec}] goes backwards, so it names no host")
    return [str(i).zfill(width) if width else str(i)
            for i in range(int(begin), int(end) + 1, step)]


def expand_host_pattern(pattern: str) -> tuple[list[str], int | None]:
    """Host names and port of a host key: ``rig-[1:3]:2222`` ->
    (['rig-1', 'rig-2', 'rig-3'], 2222). Raises ValueError for a bad range: any '[' in a
    host key starts a range for Ansible."""
    name, port = _split_port(pattern)
    return _expand_ranges(name), port


def _expand_ranges(name: str) -> list[str]:
    if "[" not in name:
        return [name]
    head, _, rest = name.partition("[")
    spec, closed, tail = rest.partition("]")
    if not closed:
        raise ValueError(f"'[' without ']' in {name!r}")
    out: list[str] = []
    for item in _range_items(spec):
        out.extend(_expand_ranges(head + item + tail))
    return out


def split_limit(limit: str) -> list[str]:
    """Ansible's split of a host pattern: on commas, else on colons outside [...]."""
    text = limit.strip()
    if "," in text:
        parts = text.split(",")
    else:
        parts, depth, cur = [], 0, ""
        for ch in text:
            if ch == "[":
                depth += 1
            elif ch == "]":
                depth = max(0, depth - 1)
            if ch == ":" and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]
