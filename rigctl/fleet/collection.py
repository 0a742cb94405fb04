"""Build rigctl's Ansible content as the collection named in galaxy.yml (``rigctl.rig``).

The collection is staged in a temporary directory, then built by ``ansible-galaxy
collection build``:

- ``galaxy.yml`` and ``meta/`` from the top of the checkout; ``docs/collection.md`` as
  the collection's README;
- ``roles/`` and ``playbooks/`` as they are;
- ``plugins/module_utils/rigctl/`` = ``rigctl/__init__.py`` and ``rigctl/core/`` (stdlib
  only, relative imports: the same files the checkout ships to hosts through ansible.cfg's
  ``module_utils``);
- ``plugins/modules/`` with one change: ``ansible.module_utils.rigctl.`` imports point at
  ``ansible_collections.<namespace>.<name>.plugins.module_utils.rigctl.``. A module inside
  an installed collection cannot reach ``ansible.module_utils.rigctl`` (Ansible looks for
  that name only in the configured module_utils paths and next to legacy roles and
  playbooks), so without the change the built collection would only work from inside a
  checkout.

Nothing is kept twice in the repository: every staged file is generated from the one
source at build time. ``python -m rigctl.fleet.collection build --output DIR`` writes
``DIR/<namespace>-<name>-<version>.tar.gz``; with ``--ee`` it also writes ``DIR/ansible.cfg``
for the execution environment (execution-environment.yml).
"""

from __future__ import annotations

import argparse
import ast
import configparser
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rigctl import __version__
from rigctl.errors import InputError, RigctlError

LEGACY_PREFIX = "ansible.module_utils.rigctl."
_LEGACY_RE = re.compile(r"\bansible\.module_utils\.rigctl\.")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*")
# ansible.cfg keys that only make sense inside a checkout or on one control machine; the
# execution environment's ansible.cfg leaves them out (the collection brings roles,
# modules and module_utils; AWX keeps its own fact cache).
_EE_DROPPED = {
    "defaults": {"roles_path", "library", "module_utils", "fact_caching",
                 "fact_caching_connection", "fact_caching_timeout", "forks"},
}


def checkout_root() -> Path:
    """The top of the rigctl checkout (the directory that holds galaxy.yml)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "galaxy.yml").is_file():
        raise InputError(
            f"no galaxy.yml in {root}: the collection is built from a rigctl checkout",
            fix="run this from a git checkout of rigctl (the wheel does not carry galaxy.yml)",
        )
    return root


def read_galaxy(root: Path) -> dict:
    import yaml

    with open(root / "galaxy.yml") as fh:
        data = yaml.safe_load(fh) or {}
    for key in ("namespace", "name", "version", "readme", "authors"):
        if not data.get(key):
            raise RigctlError(f"galaxy.yml: '{key}' is missing")
    return data


def tarball_name(galaxy: dict) -> str:
    return f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"


def module_utils_prefix(galaxy: dict) -> str:
    """The import prefix of rigctl's module_utils inside the built collection."""
    return f"ansible_collections.{galaxy['namespace']}.{galaxy['name']}.plugins.module_utils.rigctl."


def _imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def rewrite_module(text: str, prefix: str, name: str = "module") -> str:
    """A module's source with its rigctl module_utils imports pointed at ``prefix``.
    Refuses a module whose result still imports ``ansible.module_utils.rigctl`` (an import
    spelled in a way this does not cover) or does not parse."""
    out = _LEGACY_RE.sub(prefix, text)
    try:
        tree = ast.parse(out, filename=name)
    except SyntaxError as exc:
        raise RigctlError(f"{name}: does not parse after the import rewrite: {exc}") from exc
    left = [n for n in _imports(tree) if n == "ansible.module_utils.rigctl"
            or n.startswith(LEGACY_PREFIX)]
    left += ["ansible.module_utils." + a.name for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) and node.module == "ansible.module_utils"
             for a in node.names if a.name == "rigctl"]
    if left:
        raise RigctlError(f"{name}: imports {left[0]} in a form the collection build cannot "
                          "rewrite; use `from ansible.module_utils.rigctl.core import x`")
    outside = [n for n in _imports(tree) if n.startswith(prefix)
               and not (n + ".").startswith(prefix + "core.")]
    if outside:
        raise RigctlError(f"{name}: imports {outside[0][len(prefix) - len('rigctl.'):]}, but only "
                          "rigctl.core is module_utils (stdlib only, shipped to the rigs)")
    return out


def check_core(core: Path) -> None:
    """rigctl/core must import only the standard library and itself (relative imports):
    it runs on the rigs under another package name."""
    for path in sorted(core.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for name in _imports(tree):
            if name.split(".")[0] in ("rigctl", "ansible", "ansible_collections"):
                raise RigctlError(f"{path}: absolute import of {name}; rigctl/core imports "
                                  "itself with relative imports (from . import x)")


def stage(root: Path, dest: Path, galaxy: dict | None = None) -> Path:
    """Write the collection's tree into ``dest`` (created) and return it."""
    galaxy = galaxy or read_galaxy(root)
    if str(galaxy["version"]) != __version__:
        raise RigctlError(f"galaxy.yml version {galaxy['version']} is not rigctl's version "
                          f"{__version__} (rigctl/__init__.py): make them equal")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "galaxy.yml", dest / "galaxy.yml")
    shutil.copy2(root / "docs" / "collection.md", dest / str(galaxy["readme"]))
    shutil.copytree(root / "meta", dest / "meta", ignore=_IGNORED)
    shutil.copytree(root / "roles", dest / "roles", ignore=_IGNORED)
    (dest / "playbooks").mkdir()
    for path in sorted((root / "playbooks").glob("*.yml")):  # rigctl.rig.<name> each
        shutil.copy2(path, dest / "playbooks" / path.name)
    mu = dest / "plugins" / "module_utils" / "rigctl"
    check_core(root / "rigctl" / "core")
    shutil.copytree(root / "rigctl" / "core", mu / "core", ignore=_IGNORED)
    shutil.copy2(root / "rigctl" / "__init__.py", mu / "__init__.py")
    mods = dest / "plugins" / "modules"
    mods.mkdir(parents=True)
    prefix = module_utils_prefix(galaxy)
    for path in sorted((root / "plugins" / "modules").glob("*.py")):
        (mods / path.name).write_text(rewrite_module(path.read_text(), prefix, str(path)))
        shutil.copymode(path, mods / path.name)
    return dest


def galaxy_bin() -> str:
    here = Path(sys.executable).parent / "ansible-galaxy"
    return str(here) if here.exists() else (shutil.which("ansible-galaxy") or "ansible-galaxy")


def build(output: str | os.PathLike, root: Path | None = None) -> Path:
    """Stage and build the collection; the tarball's path."""
    root = root or checkout_root()
    galaxy = read_galaxy(root)
    out = Path(output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rigctl-collection-") as tmp:
        staged = stage(root, Path(tmp) / "collection", galaxy)
        proc = subprocess.run(
            [galaxy_bin(), "collection", "build", str(staged), "--output-path", str(out), "--force"],
            capture_output=True, text=True, env=dict(os.environ, ANSIBLE_NOCOLOR="1"),
        )
    tarball = out / tarball_name(galaxy)
    if proc.returncode != 0 or not tarball.is_file():
        raise RigctlError("ansible-galaxy collection build failed:\n"
                          + (proc.stderr or proc.stdout).strip())
    return tarball


def ee_ansible_cfg(src: str | os.PathLike) -> str:
    """The execution environment's ansible.cfg: rigctl's ansible.cfg without the settings
    that point into a checkout or at one control machine's cache (host key checking,
    pipelining, ssh_args and the control path stay exactly as they are)."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.optionxform = str  # keep key spelling
    cfg.read(src)
    for section, keys in _EE_DROPPED.items():
        for key in keys:
            cfg.remove_option(section, key)
    buf = io.StringIO()
    buf.write("# Generated by `python -m rigctl.fleet.collection build --ee` from rigctl's\n"
              "# ansible.cfg: do not edit, regenerate.\n")
    cfg.write(buf)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rigctl.fleet.collection")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the collection tarball")
    b.add_argument("--output", default="dist", help="directory for the tarball (default: dist)")
    b.add_argument("--ee", action="store_true",
                   help="also write ansible.cfg for the execution environment next to it")
    args = parser.parse_args(argv)
    try:
        tarball = build(args.output)
        print(tarball)
        if args.ee:
            cfg = Path(args.output) / "ansible.cfg"
            cfg.write_text(ee_ansible_cfg(checkout_root() / "ansible.cfg"))
            print(cfg)
    except RigctlError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())


def files_digest(tarball: str | os.PathLike) -> str:
    """sha256 of the tarball's FILES.json (every file's own sha256): the same for two builds
    of the same tree, whatever the tarball's timestamps. An installed collection keeps
    FILES.json, so a rig can tell whether its copy is this one (rigctl pull setup)."""
    import hashlib
    import tarfile

    with tarfile.open(tarball) as tar:
        member = tar.extractfile("FILES.json")
        if member is None:
            raise RigctlError(f"{tarball} has no FILES.json: not a collection tarball")
        return hashlib.sha256(member.read()).hexdigest()
