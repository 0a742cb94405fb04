"""The Ansible collection (galaxy.yml, meta/, rigctl.fleet.collection) and the execution
environment definition (execution-environment.yml). The collection is built here with
`ansible-galaxy collection build` into a temp dir, installed into a temp collections path
and loaded by Ansible from another directory (ansible-doc, ansible-playbook
--syntax-check: no host is contacted). Running the installed collection's playbook against
a lab rig is tests/integration/test_collection_lab.py."""

from __future__ import annotations

import ast
import configparser
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

import rigctl
from rigctl.errors import RigctlError
from rigctl.fleet import collection

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _pyproject_dep(name: str) -> str:
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if re.split(r"[<>=!~ ]", d, maxsplit=1)[0] == name]
    return spec


def _galaxy() -> dict:
    return yaml.safe_load((ROOT / "galaxy.yml").read_text())


# --- galaxy.yml and meta/ -----------------------------------------------------------------


def test_galaxy_version_is_rigctls_version():
    g = _galaxy()
    assert str(g["version"]) == rigctl.__version__
    assert re.fullmatch(r"[a-z][a-z0-9_]*", g["namespace"]) and re.fullmatch(r"[a-z][a-z0-9_]*", g["name"])


def test_runtime_requires_the_ansible_core_rigctl_pins():
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    pin = _pyproject_dep("ansible-core")
    assert "ansible-core" + runtime["requires_ansible"].replace(" ", "") == pin.replace(" ", "")


def test_meta_execution_environment_names_files_that_exist():
    meta = yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text())
    assert meta["version"] == 1
    for rel in meta["dependencies"].values():
        assert (ROOT / rel).is_file(), rel
    bindep = (ROOT / "meta" / "bindep.txt").read_text()
    assert re.search(r"^openssh-clients \[platform:rpm\]$", bindep, re.M)
    assert re.search(r"^openssh-client \[platform:dpkg\]$", bindep, re.M)


# --- the import rewrite -------------------------------------------------------------------

PREFIX = "ansible_collections.ns.coll.plugins.module_utils.rigctl."


def test_every_module_is_rewritten_to_the_collections_module_utils():
    rewrote = 0
    for path in sorted((ROOT / "plugins" / "modules").glob("*.py")):
        text = path.read_text()
        out = collection.rewrite_module(text, PREFIX, path.name)
        names = collection._imports(ast.parse(out))
        assert not any(n.startswith("ansible.module_utils.rigctl") for n in names), path.name
        if "ansible.module_utils.rigctl." in text:
            assert any(n.startswith(PREFIX + "core") for n in names), path.name
            rewrote += 1
        # nothing else changed
        assert out.replace(PREFIX, collection.LEGACY_PREFIX) == text
    assert rewrote >= 10


@pytest.mark.parametrize("source", [
    "import ansible.module_utils.rigctl.core.parsers as p\n",
    "from ansible.module_utils.rigctl.core import parsers\n",
    "from ansible.module_utils.rigctl.core.parsers import parse_modinfo\n",
])
def test_each_import_spelling_is_rewritten(source):
    out = collection.rewrite_module(source, PREFIX)
    assert "ansible.module_utils.rigctl" not in out and PREFIX + "core" in out


@pytest.mark.parametrize("source", [
    "from ansible.module_utils import rigctl\n",
    "from ansible.module_utils.rigctl import core\n",
    "import ansible.module_utils.rigctl\n",
])
def test_an_import_the_rewrite_cannot_cover_is_refused(source):
    with pytest.raises(RigctlError, match="cannot rewrite"):
        collection.rewrite_module(source, PREFIX, "m.py")


def test_a_module_importing_rigctl_outside_core_is_refused():
    with pytest.raises(RigctlError, match="only rigctl.core is module_utils"):
        collection.rewrite_module("from ansible.module_utils.rigctl.inventory import schema\n", PREFIX)


def test_rigctl_core_imports_only_the_stdlib_and_itself(tmp_path):
    collection.check_core(ROOT / "rigctl" / "core")
    (tmp_path / "bad.py").write_text("from rigctl.core import parsers\n")
    with pytest.raises(RigctlError, match="relative imports"):
        collection.check_core(tmp_path)


def test_a_version_mismatch_is_refused_before_anything_is_staged(tmp_path):
    g = dict(_galaxy(), version="9.9.9")
    with pytest.raises(RigctlError, match="9.9.9"):
        collection.stage(ROOT, tmp_path / "c", g)
    assert not (tmp_path / "c").exists()


def test_the_staged_tree_carries_rigctl_core_once_as_module_utils(tmp_path):
    staged = collection.stage(ROOT, tmp_path / "c")
    mu = staged / "plugins" / "module_utils" / "rigctl"
    sources = sorted(p.name for p in (ROOT / "rigctl" / "core").glob("*.py"))
    assert sorted(p.name for p in (mu / "core").glob("*.py")) == sources
    for name in sources:  # byte for byte the checkout's files
        assert (mu / "core" / name).read_bytes() == (ROOT / "rigctl" / "core" / name).read_bytes()
    assert (mu / "__init__.py").read_bytes() == (ROOT / "rigctl" / "__init__.py").read_bytes()
    assert not list(staged.rglob("__pycache__"))
    for rel in ("galaxy.yml", "README.md", "meta/runtime.yml", "playbooks/provision.yml",
                "playbooks/facts.yml", "playbooks/fleet_status.yml", "roles/nvidia_driver/tasks/main.yml",
                "plugins/modules/rig_facts.py", "plugins/modules/rig_status.py"):
        assert (staged / rel).is_file(), rel
    assert not (staged / "tests").exists() and not (staged / "rigctl").exists()


# --- the built collection -----------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The collection built by ansible-galaxy and installed into a temp collections path."""
    base = tmp_path_factory.mktemp("collection")
    tarball = collection.build(base / "dist")
    colls = base / "collections"
    proc = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "--force", "-p", str(colls),
         str(tarball)],
        capture_output=True, text=True, cwd=base, timeout=300,
        env=dict(os.environ, ANSIBLE_CONFIG=str(base / "none.cfg")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tarball, colls, base


def test_ansible_galaxy_builds_the_collection(built):
    tarball, _, _ = built
    g = _galaxy()
    want = f"{g['namespace']}-{g['name']}-{rigctl.__version__}.tar.gz"
    assert tarball.name == collection.tarball_name(g) == want
    with tarfile.open(tarball) as tf:
        names = set(tf.getnames())
        manifest = json.load(tf.extractfile("MANIFEST.json"))
    assert manifest["collection_info"]["version"] == rigctl.__version__
    assert "plugins/module_utils/rigctl/core/hostfacts.py" in names
    assert "plugins/modules/rig_facts.py" in names
    assert not any(n.startswith(("tests/", "rigctl/", ".venv")) for n in names)


def _outside_env(colls: Path, base: Path) -> dict:
    """Ansible that knows nothing of this checkout: an empty ansible.cfg, no module_utils or
    library path, the temp collections path."""
    cfg = base / "empty.cfg"
    cfg.write_text("[defaults]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(cfg), ANSIBLE_COLLECTIONS_PATH=str(colls), ANSIBLE_NOCOLOR="1")
    return env


def test_the_installed_collection_documents_its_modules(built):
    _, colls, base = built
    ns = _galaxy()["namespace"] + "." + _galaxy()["name"]
    proc = subprocess.run([str(BIN / "ansible-doc"), "--json", f"{ns}.rig_status", f"{ns}.rig_facts"],
                          capture_output=True, text=True, cwd=base, env=_outside_env(colls, base),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert set(docs) == {f"{ns}.rig_status", f"{ns}.rig_facts"}


def test_the_installed_collections_playbooks_resolve_their_roles(built):
    _, colls, base = built
    ns = _galaxy()["namespace"] + "." + _galaxy()["name"]
    inv = base / "inv.yml"
    inv.write_text("all:\n  children:\n    rigs:\n      hosts:\n        r1: {ansible_host: 127.0.0.1}\n")
    for pb in ("provision", "facts", "fleet_status"):
        proc = subprocess.run(
            [str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(inv), f"{ns}.{pb}"],
            capture_output=True, text=True, cwd=base, env=_outside_env(colls, base), timeout=120)
        assert proc.returncode == 0, pb + "\n" + proc.stdout + proc.stderr


def test_a_project_playbook_importing_the_collections_provision_resolves(built):
    """What an AWX project holds (docs/collection.md): one line importing the collection's
    playbook; a job template (sliced or not) runs it."""
    _, colls, base = built
    ns = _galaxy()["namespace"] + "." + _galaxy()["name"]
    project = base / "project"
    project.mkdir()
    (project / "provision.yml").write_text(f"---\n- import_playbook: {ns}.provision\n")
    inv = base / "inv.yml"
    inv.write_text("all:\n  children:\n    rigs:\n      hosts:\n        r1: {ansible_host: 127.0.0.1}\n")
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "--list-tasks", "-i", str(inv), "provision.yml"],
        capture_output=True, text=True, cwd=project, env=_outside_env(colls, base), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for role in ("rig_facts", "rig_preflight", "nvidia_driver", "gpu_tuning", "cuda", "nccl"):
        assert f"{ns}.{role} : " in proc.stdout, role


# --- the execution environment ------------------------------------------------------------

EE_SECTIONS = {"version", "images", "dependencies", "build_arg_defaults",
               "additional_build_files", "additional_build_steps", "options"}
EE_DEPENDENCIES = {"python", "galaxy", "system", "python_interpreter", "ansible_core",
                   "ansible_runner", "exclude"}
EE_STEPS = {f"{w}_{stage}" for w in ("prepend", "append")
            for stage in ("base", "galaxy", "builder", "final")}


def _ee() -> dict:
    return yaml.safe_load((ROOT / "execution-environment.yml").read_text())


def test_execution_environment_has_the_shape_ansible_builder_3_reads():
    ee = _ee()
    assert ee["version"] == 3
    assert set(ee) <= EE_SECTIONS, set(ee) - EE_SECTIONS
    assert set(ee["dependencies"]) <= EE_DEPENDENCIES
    # v3 builds on a base image; its name needs a tag
    name = ee["images"]["base_image"]["name"]
    assert re.fullmatch(r"[^:\s]+(:\d+)?/[^:\s]+:[\w][\w.-]*", name), name
    for key in ("ansible_core", "ansible_runner"):
        assert set(ee["dependencies"][key]) == {"package_pip"}
    assert set(ee["additional_build_steps"]) <= EE_STEPS
    for steps in ee["additional_build_steps"].values():
        assert all(isinstance(s, str) and not s.startswith("USER ") for s in steps)
    for entry in ee["additional_build_files"]:
        assert set(entry) == {"src", "dest"}
        assert not Path(entry["dest"]).is_absolute() and ".." not in Path(entry["dest"]).parts
    assert set(ee.get("build_arg_defaults", {})) <= {
        "ANSIBLE_GALAXY_CLI_COLLECTION_OPTS", "ANSIBLE_GALAXY_CLI_ROLE_OPTS", "PKGMGR_PRESERVE_CACHE"}
    interp = ee["dependencies"]["python_interpreter"]
    assert set(interp) <= {"package_system", "python_path"}


def test_execution_environment_pins_are_pyprojects():
    deps = _ee()["dependencies"]
    for key, name in (("ansible_core", "ansible-core"), ("ansible_runner", "ansible-runner")):
        assert deps[key]["package_pip"].replace(" ", "") == _pyproject_dep(name).replace(" ", "")


def test_execution_environment_files_exist_or_are_what_the_build_writes(tmp_path):
    ee = _ee()
    for key in ("galaxy", "python", "system"):
        rel = ee["dependencies"].get(key)
        if isinstance(rel, str) and "\n" not in rel:
            assert (ROOT / rel).is_file(), rel
    # additional_build_files: each src is a file the collection build writes with --ee
    built = {collection.tarball_name(_galaxy()), "ansible.cfg"}
    dests = {}
    for entry in ee["additional_build_files"]:
        src = Path(entry["src"])
        assert src.parent == Path("dist/ee") and src.name in built, src
        dests[src.name] = entry["dest"]
    assert set(dests) == built
    # the galaxy requirements install the tarball from where additional_build_files puts it
    reqs = yaml.safe_load((ROOT / ee["dependencies"]["galaxy"]).read_text())
    (coll,) = reqs["collections"]
    name = collection.tarball_name(_galaxy())
    assert coll == {"name": f"{dests[name]}/{name}", "type": "file"}
    # ansible.cfg lands where the final image reads it
    steps = " ".join(ee["additional_build_steps"]["append_final"])
    assert f"_build/{dests['ansible.cfg']}/ansible.cfg /etc/ansible/ansible.cfg" in steps


def test_main_writes_the_tarball_and_the_ee_config(tmp_path, capsys):
    assert collection.main(["build", "--output", str(tmp_path), "--ee"]) == 0
    out = capsys.readouterr().out.split()
    assert Path(out[0]).name == collection.tarball_name(_galaxy()) and Path(out[0]).is_file()
    assert (tmp_path / "ansible.cfg").is_file()


def test_ee_ansible_cfg_keeps_host_key_checking_and_ssh_args(tmp_path):
    from rigctl import hostkeys

    text = collection.ee_ansible_cfg(ROOT / "ansible.cfg")
    (tmp_path / "ansible.cfg").write_text(text)
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(tmp_path / "ansible.cfg")
    assert cfg["defaults"]["host_key_checking"] == "True"
    assert cfg["ssh_connection"]["pipelining"] == "True"
    for key in ("roles_path", "library", "module_utils", "fact_caching_connection"):
        assert key not in cfg["defaults"]
    ours = hostkeys.config_ssh_args(ROOT / "ansible.cfg")
    assert hostkeys.config_ssh_args(tmp_path / "ansible.cfg") == ours
    assert cfg["ssh_connection"]["control_path"] == "%(directory)s/%%C"


# --- ansible-builder itself ------------------------------------------------------------------
# The image build needs the base image's registry, which the test machines cannot reach; what
# runs here is ansible-builder's own `create` (it reads execution-environment.yml with its
# schema and writes the build context) and the context's introspect script, which is what
# the image build runs to find the collection's system dependencies.


def test_ansible_builder_creates_the_context_from_the_built_collection(tmp_path):
    builder = BIN / "ansible-builder"
    assert builder.is_file(), "ansible-builder is a dev dependency (pyproject.toml)"
    work = tmp_path / "ee"
    work.mkdir()
    (work / "execution-environment.yml").write_text((ROOT / "execution-environment.yml").read_text())
    (work / "ee").mkdir()
    (work / "ee" / "requirements.yml").write_text((ROOT / "ee" / "requirements.yml").read_text())
    assert collection.main(["build", "--output", str(work / "dist" / "ee"), "--ee"]) == 0
    proc = subprocess.run([str(builder), "create", "-f", "execution-environment.yml", "-c", "ctx",
                           "--output-filename", "Containerfile"],
                          capture_output=True, text=True, cwd=work, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ctx = work / "ctx"
    containerfile = (ctx / "Containerfile").read_text()
    name = collection.tarball_name(_galaxy())
    assert (ctx / "_build" / "collections" / name).is_file()
    assert (ctx / "_build" / "configs" / "ansible.cfg").read_text() == (
        work / "dist" / "ee" / "ansible.cfg").read_text()
    base = _ee()["images"]["base_image"]["name"]
    assert f'ARG EE_BASE_IMAGE="{base}"' in containerfile
    assert 'ARG ANSIBLE_GALAXY_CLI_COLLECTION_OPTS="--offline"' in containerfile
    core, runner = (_pyproject_dep(n) for n in ("ansible-core", "ansible-runner"))
    assert f'ARG ANSIBLE_INSTALL_REFS="{core} {runner}"' in containerfile
    assert "COPY _build/configs/ansible.cfg /etc/ansible/ansible.cfg" in containerfile
    # What the image build does with the collection: install it offline from the context,
    # then introspect every installed collection for system packages (meta/bindep.txt).
    reqs = yaml.safe_load((ctx / "_build" / "requirements.yml").read_text())
    assert reqs["collections"] == [{"name": f"collections/{name}", "type": "file"}]
    colls = tmp_path / "collections"
    proc = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-p",
                           str(colls), str(ctx / "_build" / "collections" / name)],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, ANSIBLE_GALAXY_DISABLE_GPG_VERIFY="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bindep = tmp_path / "bindep.txt"
    proc = subprocess.run([sys.executable, str(ctx / "_build" / "scripts" / "introspect.py"),
                           "introspect", f"--write-bindep={bindep}", str(colls)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ns = _galaxy()["namespace"] + "." + _galaxy()["name"]
    lines = {line.split("#")[0].strip(): line.split("#", 1)[1].strip()
             for line in bindep.read_text().splitlines() if line.strip()}
    assert lines == {"openssh-clients [platform:rpm]": f"from collection {ns}",
                     "openssh-client [platform:dpkg]": f"from collection {ns}"}
