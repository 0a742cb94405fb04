"""The rig variable schema and what is generated from it (role argument specs,
docs/inventory.md, by `python -m rigctl.inventory.generate`), the example inventory, and
agreement with Ansible's own reading of inventories (`ansible-inventory --list`)."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from rigctl import inventory as inv_mod
from rigctl.core import gpudb
from rigctl.inventory import argspecs, docs, generate, schema
from rigctl.inventory.catalog import P2P_CATALOG
from rigctl.inventory.values import check_value

from .inventory_helpers import EXAMPLE, REPO, ansible_list, assert_same_as_ansible, write

# --- the schema itself --------------------------------------------------------------------


def test_required_variables_are_defined():
    required = {
        "rig_driver_flavor", "rig_driver_version", "rig_driver_source", "rig_driver_mirror_url",
        "rig_p2p_source", "rig_power_limit_w", "rig_power_limit_overrides",
        "rig_persistence_mode", "rig_cuda_version", "rig_cuda_source", "rig_nccl_version",
        "rig_nccl_socket_ifname", "rig_nccl_env", "rig_iommu_policy", "rig_reboot_policy",
        "rig_hw_check_policy", "rig_gpu_count", "rig_lab_profile", "rig_min_free_disk_gib",
    }
    assert required <= set(schema.NAMES)
    assert schema.get("rig_driver_flavor").default == "open"
    assert schema.get("rig_driver_flavor").choices == ("open", "p2p")
    assert schema.get("rig_reboot_policy").default == "never"
    assert schema.get("rig_iommu_policy").default == "check"
    assert schema.get("rig_persistence_mode").default is True
    assert schema.get("rig_min_free_disk_gib").default == 10
    assert schema.get("rig_driver_version").default is None


@pytest.mark.parametrize("f", schema.VARIABLES, ids=lambda f: f.name)
def test_every_variable_is_complete(f):
    assert f.name.startswith("rig_")
    assert f.type in schema.TYPES
    assert len(f.description) > 40
    assert set(f.roles) <= set(schema.ROLES)
    # no role reads these: lab inventories, and playbooks/fleet_rollout.yml (fleet update)
    assert f.roles or f.name in ("rig_lab_profile", "rig_drain_units")
    assert f.section in schema.SECTIONS
    assert list(check_value(f, f.default)) == [], "the default must pass its own check"
    assert f.example is not None
    assert list(check_value(f, f.example)) == [], "the example must pass the check"
    if f.default is None:
        assert f.nullable


def test_patterns_from_the_brief():
    ok = {"rig_driver_version": ["570.86.16", "565.77", "550.54.15"],
          "rig_cuda_version": ["12.8", "12.10", "13.0"],
          "rig_nccl_version": ["2.26.2", "2.26.2-1"]}
    bad = {"rig_driver_version": ["570", "570.86.16.1", "57.86.16", "v570.86.16"],
           "rig_cuda_version": ["12", "12.8.1", "1.2"],
           "rig_nccl_version": ["3.1.1", "2.26", "2.26.2+cuda12.8"]}
    for name, values in ok.items():
        for v in values:
            assert list(check_value(schema.get(name), v)) == [], (name, v)
    for name, values in bad.items():
        for v in values:
            assert list(check_value(schema.get(name), v)), (name, v)


def test_one_table_of_value_types():
    """A type is defined once (schema.TYPES): what it accepts and its names in messages,
    docs and argument specs, which Ansible must know."""
    ansible_types = {"str", "int", "float", "bool", "list", "dict", "raw"}
    for name, t in schema.TYPES.items():
        assert t.argspec in ansible_types, name
        assert t.words and t.doc, name
    accepts = {name: t.accepts for name, t in schema.TYPES.items()}
    assert accepts["int"](3) and not accepts["int"](True) and not accepts["int"](3.0)
    assert accepts["float"](3) and not accepts["float"](False)
    assert accepts["int_or_list"]([1600, 1000]) and not accepts["int_or_list"]("1600")


def test_version_formats_are_the_ones_rigctl_core_parses():
    """One definition of a driver version and a CUDA release: the inventory check accepts
    exactly what rigctl.core (roles, modules, suites) parses."""
    from rigctl.core import cuda as cudalib
    from rigctl.core import driver as driverlib

    assert schema.DRIVER_VERSION_RE == driverlib.VERSION_PATTERN
    assert schema.CUDA_VERSION_RE == cudalib.CUDA_VERSION_PATTERN
    for v in ("570.86.16", "565.77", "57.86.16", "570", "570.86.16.1", "570.86.16\n", ""):
        accepted = not list(check_value(schema.get("rig_driver_version"), v))
        assert accepted == driverlib.is_driver_version(v), v
    for v in ("12.8", "12.10", "13.0", "12", "12.8.1", "1.2", "v12.8"):
        accepted = not list(check_value(schema.get("rig_cuda_version"), v))
        try:
            parsed = cudalib.parse_cuda_version(v) is not None
        except ValueError:
            parsed = False
        assert accepted == parsed, v


def test_a_pattern_takes_the_whole_value():
    """A `|` block scalar ends in a newline, which a pattern's `$` would let through: the
    role would then pin apt to "570.86.16\\n"."""
    for name, value in (("rig_driver_version", "570.86.16\n"), ("rig_cuda_version", "12.8\n"),
                        ("rig_driver_mirror_url", "https://mirror.example/x\n")):
        issues = list(check_value(schema.get(name), value))
        assert [i.message for i in issues] and "expected format" in issues[0].message, name


def test_gpu_selectors():
    p = gpudb.parse_gpu_selector
    assert p(0) == p("0") == ("index", 0)
    assert p("0000:41:00.0") == p("00000000:41:00.0") == p("41:00.0") == ("bus_id", "0000:41:00.0")
    assert p("0000:C1:00.0") == ("bus_id", "0000:c1:00.0")
    assert p("GPU-5A4B3C2D-1E0F-4A9B-8C7D-6E5F4A3B2C1D")[0] == "uuid"
    for bad in ("gpu0", -1, True, "0000:41:00", "GPU-123", 1.5):
        assert p(bad) is None, bad


def test_gpu_selectors_keep_pci_domains_other_than_0000():
    # Multi-segment EPYC boards put GPUs in domains 0001, 0002, ...; Intel VMD from 10000.
    # The schema used to reject 8-digit domains past 0000 and the host side cut every
    # domain to its last 4 digits (00010000 -> 0000): one parser now, in rigctl.core.
    p = gpudb.parse_gpu_selector
    assert p("0001:41:00.0") == p("00000001:41:00.0") == ("bus_id", "0001:41:00.0")
    assert p("00010000:41:00.0") == p("10000:41:00.0") == ("bus_id", "10000:41:00.0")
    assert p("00010000:41:00.0") != p("0000:41:00.0")
    assert gpudb.normalize_bus_id("00010000:C1:00.0") == "10000:c1:00.0"


def test_inventory_and_host_read_selectors_alike():
    """Every key the inventory check accepts names the GPU the host side picks, and a key
    it refuses names none there (the host matches with the same parser)."""
    gpus = [{"index": 0, "bus_id": "0000:41:00.0", "uuid": "GPU-5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"},
            {"index": 1, "bus_id": "0001:41:00.0", "uuid": None},
            {"index": 2, "bus_id": "10000:41:00.0", "uuid": None}]
    cases = {"0": 0, 1: 1, "41:00.0": 0, "00000000:41:00.0": 0, "00000001:41:00.0": 1,
             "0001:41:00.0": 1, "00010000:41:00.0": 2, "10000:41:00.0": 2,
             "GPU-5A4B3C2D-1E0F-4A9B-8C7D-6E5F4A3B2C1D": 0}
    for key, index in cases.items():
        assert gpudb.parse_gpu_selector(key) is not None, key
        assert gpudb.select_gpu(gpus, key)["index"] == index, key
    for key in ("1:00.0", "0000:41:00", "GPU-123", "gpu0", -1, True):
        assert gpudb.parse_gpu_selector(key) is None, key
        assert gpudb.select_gpu(gpus, key) is None, key


def test_compute_modes_one_table():
    assert schema.COMPUTE_MODES == tuple(gpudb.COMPUTE_MODES)
    assert schema.get("rig_compute_mode").choices == schema.COMPUTE_MODES


def test_catalog_entries_are_pinned_and_consistent():
    for name, s in P2P_CATALOG.items():
        assert re.fullmatch(schema.COMMIT_RE, s.commit), name
        assert s.branch == f"{s.driver_version}-p2p"
        assert name.endswith(s.driver_version)
        assert re.fullmatch(schema.DRIVER_VERSION_RE, s.driver_version)
        assert s.url.startswith("https://github.com/")
    assert "tinygrad-565.57.01" in P2P_CATALOG
    # user catalog entries (rig_p2p_catalog) are names too: checked by the inventory check
    assert not schema.get("rig_p2p_source").option("catalog").choices


# --- docs/inventory.md -----------------------------------------------------------------------


def test_docs_in_sync_with_schema():
    problems = docs.check_docs(str(REPO / "docs" / "inventory.md"))
    assert problems == [], "\n".join(problems) + (
        "\nregenerate: python -m rigctl.inventory.generate --write-docs docs/inventory.md")


def test_docs_mention_every_variable_and_catalog_entry():
    text = (REPO / "docs" / "inventory.md").read_text()
    for name in schema.NAMES:
        assert f"### `{name}`" in text
    for s in P2P_CATALOG.values():
        assert s.commit in text


@pytest.mark.parametrize("source, url", list(schema.MIRROR_URLS.items()))
def test_every_mirror_source_needs_its_url_in_the_check_and_the_docs(tmp_path, source, url):
    """One list of which variable a `mirror` source needs: the check enforces it, the docs
    say it (they used to name the driver and CUDA mirrors only, not NCCL's)."""
    assert "mirror" in schema.get(source).choices and schema.get(url) is not None
    said = " ".join(docs.render_docs().split())
    assert f"`{source}: mirror` needs `{url}`" in said
    (tmp_path / "hosts.yml").write_text(
        "all:\n  children:\n    rigs:\n      hosts:\n"
        f"        rig-a: {{ansible_host: 192.0.2.10, {source}: mirror}}\n")
    problems = inv_mod.check(inv_mod.load([str(tmp_path / "hosts.yml")]))
    assert [(p.key, p.message) for p in problems if p.severity == "error"] == [
        (url, f"required because {source} is 'mirror'")]


def test_check_docs_detects_drift(tmp_path):
    doc = tmp_path / "inventory.md"
    assert generate.main(["--write-docs", str(doc)]) == 0
    assert generate.main(["--check-docs", str(doc)]) == 0
    doc.write_text(doc.read_text().replace("rig_power_limit_w", "rig_power_limit"))
    assert generate.main(["--check-docs", str(doc)]) == 1


# --- role argument specs ------------------------------------------------------------------------


def test_write_and_check_argspecs(tmp_path, capsys):
    roles = tmp_path / "roles"
    for r in ("rig_facts", "rig_preflight", "nccl", "not_ours"):
        (roles / r).mkdir(parents=True)
    assert generate.main(["--write-argspecs", str(roles)]) == 0
    assert (roles / "rig_facts/meta/argument_specs.yml").exists()
    assert (roles / "nccl/meta/argument_specs.yml").exists()
    assert not (roles / "not_ours/meta").exists()
    assert not (roles / "cuda").exists()  # no role directory is created
    assert generate.main(["--check-argspecs", str(roles)]) == 0

    spec = yaml.safe_load((roles / "rig_preflight/meta/argument_specs.yml").read_text())
    main = spec["argument_specs"]["main"]
    assert main["short_description"]
    opts = main["options"]
    assert set(opts) == {f.name for f in schema.VARIABLES if "rig_preflight" in f.roles}
    assert opts["rig_driver_flavor"] == {
        "type": "str", "default": "open", "choices": ["open", "p2p"],
        "description": opts["rig_driver_flavor"]["description"]}
    assert opts["rig_hw_check_policy"]["choices"] == ["enforce", "warn", None]
    assert opts["rig_p2p_source"]["type"] == "dict"
    assert set(opts["rig_p2p_source"]["options"]) == {"catalog", "url", "branch", "commit"}
    assert opts["rig_gpu_count"]["type"] == "int" and "default" not in opts["rig_gpu_count"]

    # drift: an edited file and a deleted one are both reported, exit 1
    path = roles / "rig_preflight/meta/argument_specs.yml"
    path.write_text(path.read_text().replace("default: 10", "default: 5"))
    (roles / "nccl/meta/argument_specs.yml").unlink()
    capsys.readouterr()
    assert generate.main(["--check-argspecs", str(roles)]) == 1
    out = capsys.readouterr().out
    assert "rig_min_free_disk_gib.default: schema says 10, file says 5" in out
    assert "nccl/meta/argument_specs.yml: missing" in out
    assert "--write-argspecs" in out


def test_role_defaults_must_match_the_schema(tmp_path):
    roles = tmp_path / "roles"
    (roles / "rig_facts" / "defaults").mkdir(parents=True)
    argspecs.write_argspecs(str(roles))
    defaults = roles / "rig_facts" / "defaults" / "main.yml"
    defaults.write_text("rig_min_free_disk_gib: 10\nrig_gpu_count: null\n"
                        "rig_facts_timeout: 30\n")
    assert argspecs.check_argspecs(str(roles)) == []
    defaults.write_text("rig_min_free_disk_gib: 5\nrig_power_limit: 300\n"
                        "rig_cuda_version: null\n")
    problems = "\n".join(argspecs.check_argspecs(str(roles)))
    assert "rig_min_free_disk_gib is 5 here but the schema default is 10" in problems
    assert "rig_power_limit is not a rig variable of the schema" in problems
    assert "rig_cuda_version is not listed as read by rig_facts" in problems


def test_check_argspecs_as_a_command(tmp_path):
    roles = tmp_path / "roles"
    (roles / "cuda").mkdir(parents=True)
    cmd = [sys.executable, "-m", "rigctl.inventory.generate", "--check-argspecs", str(roles)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and "missing" in r.stdout
    assert "RuntimeWarning" not in r.stderr
    subprocess.run([*cmd[:3], "--write-argspecs", str(roles)], check=True, cwd=REPO,
                   capture_output=True)
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


def test_generate_refuses_a_missing_roles_dir_and_writes_nothing(tmp_path, capsys):
    doc = tmp_path / "inventory.md"
    rc = generate.main(["--write-docs", str(doc), "--write-argspecs", str(tmp_path / "nope")])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"error: roles directory not found: {tmp_path / 'nope'}" in err and "fix:" in err
    assert not doc.exists()
    assert generate.main([]) == 2  # no option: the help, exit 2


def test_generated_files_name_the_command_that_writes_them(tmp_path):
    (tmp_path / "roles" / "nccl").mkdir(parents=True)
    argspecs.write_argspecs(str(tmp_path / "roles"))
    spec = (tmp_path / "roles" / "nccl" / "meta" / "argument_specs.yml").read_text()
    assert f"#   {generate.PROG} --write-argspecs roles\n" in spec
    assert f"{generate.PROG} --write-docs docs/inventory.md" in docs.render_docs()
    assert generate.PROG == "python -m rigctl.inventory.generate"


def test_repository_roles_argspecs_in_sync():
    roles = REPO / "roles"
    have = [r for r in schema.ROLES if (roles / r / "meta" / "argument_specs.yml").exists()]
    if not have:
        pytest.skip("no generated argument specs in roles/ yet "
                    "(python -m rigctl.inventory.generate --write-argspecs roles)")
    problems = argspecs.check_argspecs(str(roles))
    assert problems == [], "\n".join(problems)


def _validator(role):
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    return ArgumentSpecValidator(argspecs.argument_spec(role)["argument_specs"]["main"]["options"])


@pytest.mark.parametrize("role", list(schema.ROLES))
def test_argspecs_accept_the_example_fleet(role):
    """What the roles will validate with Ansible agrees with the inventory check."""
    inv = inv_mod.load([str(EXAMPLE)])
    names = {f.name for f in schema.for_role(role)}
    for host in inv.rig_hosts:
        params = {k: v for k, v in inv.host_vars(host).items() if k in names}
        result = _validator(role).validate(params)
        assert result.error_messages == [], (host, result.error_messages)


def test_argspecs_refuse_bad_values():
    result = _validator("rig_preflight").validate({"rig_driver_flavor": "p3p"})
    assert result.error_messages
    result = _validator("rig_preflight").validate({"rig_hw_check_policy": None})
    assert result.error_messages == []
    result = _validator("nvidia_driver").validate(
        {"rig_p2p_source": {"catalog": "aikitoria-570.86.16"}})
    assert result.error_messages == []
    # catalog names include the user catalog (rig_p2p_catalog): the argument spec checks
    # the keys, the inventory check and the role check the name
    result = _validator("nvidia_driver").validate({"rig_p2p_source": {"catlog": "nope"}})
    assert result.error_messages


# --- the example inventory ------------------------------------------------------------------------


def test_example_uses_every_variable():
    text = "\n".join(p.read_text() for p in EXAMPLE.rglob("*.yml"))
    inv = inv_mod.load([str(EXAMPLE)])
    set_somewhere = {name for h in inv.hosts for name, d in inv.resolved(h).items()
                     if d.layer != "default"}
    for name in schema.NAMES:
        assert name in text, f"{name} is not in the example"
        if name != "rig_lab_profile":  # lab rigs only: documented in a comment
            assert name in set_somewhere, f"{name} is not set for any example host"
    assert "rig_lab_profile" not in set_somewhere


def test_example_uses_documentation_addresses_and_real_p2p_pins():
    inv = inv_mod.load([str(EXAMPLE)])
    net = ipaddress.ip_network("192.0.2.0/24")
    for h in inv.hosts:
        assert ipaddress.ip_address(inv.host_vars(h)["ansible_host"]) in net
    src = inv.host_vars("rig-epyc-1")["rig_p2p_source"]
    entry = P2P_CATALOG["aikitoria-570.86.16"]
    assert (src["url"], src["branch"], src["commit"]) == (entry.url, entry.branch, entry.commit)
    assert inv.host_vars("rig-epyc-1")["rig_driver_version"] == entry.driver_version
    assert inv_mod.check(inv) == []  # no error, warning or note


# --- agreement with ansible-inventory ---------------------------------------------------------


def test_example_same_as_ansible_inventory(tmp_path):
    inv_dir = tmp_path / "example"
    shutil.copytree(EXAMPLE, inv_dir)
    theirs, data = ansible_list([str(inv_dir)], tmp_path)
    inv = inv_mod.load([str(inv_dir)])
    assert sorted(theirs) == sorted(inv.hosts)
    assert sorted(data["rigs"]["children"]) == ["desktop", "epyc"]
    assert theirs["rig-epyc-1"]["rig_power_limit_overrides"] == {"0000:41:00.0": 250}
    assert theirs["rig-epyc-1"]["rig_driver_version"] == "570.86.16"
    assert theirs["rig-tr-1"]["rig_driver_flavor"] == "open"
    assert theirs["rig-epyc-2"]["ansible_port"] == 2222
    assert_same_as_ansible([str(inv_dir)], tmp_path)


PRECEDENCE = {
    "inv/hosts.yml": """\
        all:
          vars: {v1: all-inline, v2: all-inline, v3: all-inline}
          children:
            rigs:
              vars: {v1: rigs-inline, v4: rigs-inline, v5: rigs-inline}
              children:
                beta:
                  hosts:
                    h1: {v6: host-inline}
                    h2:
                  vars: {v5: beta-inline, v7: beta}
                alpha:
                  hosts:
                    h1:
                  vars: {v5: alpha-inline, v7: alpha}
                prio:
                  hosts: {h2: }
                  vars: {ansible_group_priority: 5, v9: prio}
                aaa:
                  hosts: {h2: }
                  vars: {v9: aaa}
            zeta:
              hosts:
                h1: {v8: zeta-host-inline}
              vars: {v5: zeta-inline}
            deep1:
              children:
                deep2:
                  children:
                    deep3:
                      hosts: {h1: }
                      vars: {v5: deep3}
        """,
    "inv/group_vars/all.yml": "v2: gv-all\nv4: gv-all\nv3: gv-all\n",
    "inv/group_vars/rigs/a.yml": "v3: gv-rigs-a\nv10: a\n",
    "inv/group_vars/rigs/b.yml": "v10: b\n",
    "inv/group_vars/rigs.yml": "v10: shadowed\n",
    "inv/group_vars/alpha": "v11: alpha-noext\n",
    "inv/group_vars/beta.yaml": "v11: beta-yaml\nv6: gv-beta\n",
    "inv/host_vars/h1/a.yml": "v8: hv-h1-a\nanchor: &x {a: 1, b: 2}\nmerged:\n  <<: *x\n",
    "inv/host_vars/h1/sub/b.yml": "v8: hv-h1-b\n",
    "inv/host_vars/h1.yml": "v8: shadowed\n",
    "inv/group_vars/zeta.json": '{"v12": "zeta-json", "v5": "gv-zeta"}',
}


def test_precedence_same_as_ansible_inventory(tmp_path):
    write(tmp_path, PRECEDENCE)
    assert_same_as_ansible(["inv/hosts.yml"], tmp_path)


def test_directory_and_several_sources_same_as_ansible_inventory(tmp_path):
    write(tmp_path, {
        "d/a.yml": "all:\n  children:\n    rigs:\n      hosts:\n        r[1:3]:\n"
                   "      vars: {x: 1}\n",
        "d/b.yaml": "rigs:\n  hosts:\n    r2: {x: 5}\n    'r9:2200': {y: 2}\n    single:\n",
        "d/sub/c.yml": "all:\n  hosts:\n    lone: {z: 1}\n",
        "d/group_vars/ungrouped.yml": "u: 1\n",
        "d/group_vars/rigs.yml": "x: 2\n",
        "e.yml": "all:\n  children:\n    rigs:\n      hosts:\n        r1: {w: e}\n"
                 "        'n[a:b]-[01:02]':\n",
        "group_vars/rigs.yml": "x: 3\n",
    })
    assert_same_as_ansible(["d", "e.yml"], tmp_path)
