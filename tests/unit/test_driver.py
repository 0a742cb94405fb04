"""The driver logic shipped to hosts (rigctl.core.driver) and the P2P source catalog."""

from __future__ import annotations

import re

import pytest

from rigctl.core import catalog, driver
from rigctl.inventory import catalog as inventory_catalog


def test_catalog_is_one_list_reexported():
    assert inventory_catalog.P2P_CATALOG is catalog.P2P_CATALOG


@pytest.mark.parametrize("entry", list(catalog.P2P_CATALOG.values()), ids=lambda e: e.name)
def test_catalog_entry_is_pinned_and_consistent(entry):
    assert re.fullmatch(r"[0-9a-f]{40}", entry.commit)
    assert entry.branch == entry.driver_version + "-p2p"
    assert entry.name.endswith(entry.driver_version)
    assert driver.is_driver_version(entry.driver_version)
    assert entry.url.startswith("https://github.com/") and entry.url.endswith(".git")
    assert set(entry.generations) <= {"Ampere", "Ada", "Blackwell"}
    assert entry.base == entry.driver_version and entry.kernels["base"] == entry.driver_version
    assert entry.origin == "built-in"


def test_the_570_branch_claims_the_4090_only():
    # its README claims P2P for the 4090 only; 5090 support came with aikitoria's
    # branches from 580.105.08 on, so no pinned entry claims Blackwell
    entry = catalog.P2P_CATALOG["aikitoria-570.86.16"]
    assert entry.gpus == ("RTX 4090",) and entry.generations == ("Ada",)
    assert not [e.name for e in catalog.P2P_CATALOG.values() if "Blackwell" in e.generations]
    assert "580.105.08" in entry.note


def test_5090_support_known_from_580_105_08():
    claims = {b.base for b in catalog.KNOWN_BRANCHES if "RTX 5090" in b.gpus
              and "fails" not in b.note}
    assert min(claims, key=driver.version_tuple) == "580.105.08"
    assert "615.71.09" in claims


def test_user_catalog_entries_resolve_after_the_built_in_ones():
    user = {"mine-580.105.08": {"url": "file:///srv/forks/aikitoria.git",
                                "branch": "580.105.08-p2p", "commit": "a" * 40,
                                "driver_version": "580.105.08", "gpus": ["RTX 5090"]}}
    got = driver.resolve_p2p_source({"catalog": "mine-580.105.08"}, user)
    assert got["catalog"] == "mine-580.105.08" and got["commit"] == "a" * 40
    assert got["driver_version"] == "580.105.08" and got["generations"] == ["Blackwell"]
    assert catalog.lookup("mine-580.105.08", user).origin == "inventory"
    # a user entry cannot shadow a built-in name; a bad entry is not used
    assert catalog.entry_problems("aikitoria-570.86.16", user["mine-580.105.08"])
    bad = {"x": dict(user["mine-580.105.08"], commit="abc")}
    assert catalog.lookup("x", bad) is None
    with pytest.raises(ValueError, match="not in the catalog"):
        driver.resolve_p2p_source({"catalog": "x"}, bad)


@pytest.mark.parametrize("value, key, needle", [
    ({"url": "ftp://x/y.git", "branch": "b", "commit": "a" * 40, "driver_version": "580.1.2"},
     "url", "not a git URL"),
    ({"url": "/srv/f.git", "branch": "b", "commit": "A" * 40, "driver_version": "580.1.2"},
     "commit", "full 40-character"),
    ({"url": "/srv/f.git", "branch": "b", "commit": "a" * 40, "driver_version": 580.1},
     "driver_version", "not a driver version"),
    ({"url": "/srv/f.git", "branch": "b", "commit": "a" * 40}, None, "driver_version is missing"),
    ({"url": "/srv/f.git", "branch": "b", "commit": "a" * 40, "driver_version": "580.1.2",
      "generation": "x"}, "generation", "unknown key"),
])
def test_user_catalog_entry_problems(value, key, needle):
    found = catalog.entry_problems("mine", value)
    assert [(k, m) for k, m, _ in found if needle in m and k == key], found


def test_catalog_lookup_by_version():
    assert [e.name for e in catalog.entries_for_version("565.57.01")] == ["tinygrad-565.57.01"]
    assert catalog.entries_for_version("535.261.03") == []


@pytest.mark.parametrize("text,version", [
    ("NVIDIA_VERSION = 570.86.16\n", "570.86.16"),
    ("# comment\nNVIDIA_VERSION ?= 565.77\nOTHER = 1\n", "565.77"),
    ("NVIDIA_VERSION := 535.261.03", "535.261.03"),
])
def test_version_mk_parsed(text, version):
    assert driver.parse_version_mk(text) == version


@pytest.mark.parametrize("text", ["", "NVIDIA_VERSION = main\n", "VERSION = 570.86.16\n"])
def test_version_mk_without_a_version_refused(text):
    with pytest.raises(ValueError):
        driver.parse_version_mk(text)


@pytest.mark.parametrize("deb,ok", [
    ("535.261.03-1", True),
    ("535.261.03-1~deb12u1", True),
    ("1:535.261.03-0ubuntu1", True),
    ("535.261.031-1", False),
    ("535.261.0-1", False),
    ("535.171.04-1~deb12u1", False),
    ("", False),
])
def test_debian_version_matches_exactly(deb, ok):
    assert driver.deb_version_matches(deb, "535.261.03") is ok


def test_resolve_catalog_source():
    got = driver.resolve_p2p_source({"catalog": "aikitoria-570.86.16"})
    assert got["commit"] == "0e943687150e438f265b6fe2b0f6b8bae66050fe"
    assert got["branch"] == "570.86.16-p2p" and got["driver_version"] == "570.86.16"
    assert got["catalog"] == "aikitoria-570.86.16"


def test_catalog_source_url_can_point_at_a_mirror():
    got = driver.resolve_p2p_source({"catalog": "tinygrad-565.57.01",
                                     "url": "file:///srv/mirror/tinygrad.git"})
    assert got["url"] == "file:///srv/mirror/tinygrad.git"
    assert got["commit"] == catalog.P2P_CATALOG["tinygrad-565.57.01"].commit


def test_resolve_url_source():
    got = driver.resolve_p2p_source({"url": "file:///srv/f.git", "branch": "535.261.03-p2p",
                                     "commit": "a" * 40})
    assert got["driver_version"] == "535.261.03" and got["catalog"] is None


@pytest.mark.parametrize("source,needle", [
    ({"catalog": "nope"}, "not in the catalog"),
    ({"url": "file:///x", "branch": "535.261.03-p2p"}, "missing: commit"),
    ({"url": "file:///x", "branch": "b", "commit": "abc123"}, "full 40-character"),
    ({"url": "file:///x", "branch": "b", "commit": 1111111111111111111111111111111111111111},
     "quoted string"),
    (None, "mapping"),
])
def test_bad_source_refused(source, needle):
    with pytest.raises(ValueError, match=needle):
        driver.resolve_p2p_source(source)


def test_version_mismatch_names_both_versions_and_the_matching_entry():
    msg = driver.version_mismatch_message(
        "550.54.15", "565.57.01",
        {"url": "https://example.invalid/f.git", "branch": "565.57.01-p2p", "commit": "a" * 40})
    assert "550.54.15" in msg and "565.57.01" in msg
    assert "tinygrad-565.57.01" in msg  # the entry that matches the userspace
    assert "tinygrad-550.54.15" in msg  # and the one that matches the source
    assert "Nothing was changed" in msg


def test_version_mismatch_without_catalog_entry():
    msg = driver.version_mismatch_message("535.261.05", "535.261.03", {"url": "file:///f"})
    assert "No catalog entry is built for 535.261.03" in msg


def test_dkms_version_carries_the_commit():
    assert driver.p2p_dkms_version("570.86.16", "0e943687150e" + "0" * 28) == "570.86.16-0e943687150e"


def test_dkms_conf_passes_headers_build_and_source_trees():
    conf = driver.dkms_conf("nvidia-p2p", "535.261.03-abc")
    assert 'PACKAGE_NAME="nvidia-p2p"' in conf
    assert "SYSSRC=" in conf and "SYSOUT=/lib/modules/${kernelver}/build" in conf
    assert "/lib/modules/${kernelver}/source" in conf
    for i, mod in enumerate(driver.OPEN_MODULES):
        assert f'BUILT_MODULE_NAME[{i}]="{mod}"' in conf
        assert f'BUILT_MODULE_LOCATION[{i}]="kernel-open/"' in conf


def test_build_log_relevant_lines():
    log = "\n".join(["  CC [M]  a.o"] * 50 + [
        "kernel-open/x.c:2:27: error: 'undeclared_identifier' undeclared",
        "make[1]: *** [Makefile:3: all] Error 2",
    ])
    lines = driver.relevant_build_lines(log)
    assert lines[0].startswith("kernel-open/x.c:2:27: error")
    assert len(lines) == 2
    assert len(driver.relevant_build_lines("\n".join(f"line {i}" for i in range(100)))) == 25


def test_target_kernels_with_and_without_headers():
    facts = {"running": "6.18.44-host", "with_headers": ["6.1.0-50-amd64"],
             "module_dirs": ["6.1.0-50-amd64", "6.1.0-9-amd64"], "with_modules": ["6.1.0-9-amd64"],
             "images": ["6.1.0-50-amd64", "6.1.0-49-amd64"]}
    targets, missing = driver.target_kernels(facts)
    # version order (6.1.0-9 before 6.1.0-49), a kernel with modules of its own counts
    assert targets == ["6.1.0-9-amd64", "6.1.0-49-amd64", "6.1.0-50-amd64"]
    assert missing == ["6.1.0-9-amd64", "6.1.0-49-amd64"]
    # the running kernel of a container (the host's) is no target
    assert "6.18.44-host" not in targets


def test_target_kernels_never_look_at_this_machine(monkeypatch):
    # The suites run it on the controller: a /lib/modules/K/kernel there says nothing about
    # the rig. Only the rig's facts (with_modules, gathered on the rig) count.
    monkeypatch.setattr(driver.os.path, "isdir", lambda path: True)
    monkeypatch.setattr(driver.os, "listdir", lambda path: ["kernel"])
    facts = {"running": "6.1.0-50-amd64", "with_headers": [], "images": [],
             "module_dirs": ["6.1.0-50-amd64"], "with_modules": []}
    assert driver.target_kernels(facts) == ([], [])


def _jinja_value(template, context):
    import jinja2

    inner = re.fullmatch(r"\s*\{\{(.*)\}\}\s*", template, re.S)
    assert inner, template
    return jinja2.Environment().compile_expression(inner.group(1))(**context)


def test_the_role_builds_for_the_kernels_the_rig_facts_name(tmp_path):
    """validate.yml's target kernels and missing headers are rig_facts' (the suite reads the
    same facts): a kernel with modules of its own but no /boot image and no headers is a
    target without headers for both, never only for one of them."""
    import yaml

    from rigctl import paths
    from rigctl.core import hostfacts

    for rel in ("lib/modules/6.1.0-27-amd64/build/Makefile", "boot/vmlinuz-6.1.0-27-amd64",
                "lib/modules/6.1.0-26-amd64/kernel/fs/x.ko",
                "lib/modules/6.1.0-25-amd64/updates/dkms/nvidia.ko"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    kern = hostfacts.kernels(str(tmp_path))
    assert kern["targets"] == ["6.1.0-26-amd64", "6.1.0-27-amd64"]
    assert kern["targets_without_headers"] == ["6.1.0-26-amd64"]
    assert (kern["targets"], kern["targets_without_headers"]) == driver.target_kernels(kern)

    tasks = yaml.safe_load((paths.ansible_dir() / "roles/nvidia_driver/tasks/validate.yml").read_text())
    task = next(t for t in tasks if "_nv_targets" in (t.get("ansible.builtin.set_fact") or {}))
    context = {"rig_host": {"kernel": kern}}
    for name, value in (task.get("vars") or {}).items():
        try:
            context[name] = _jinja_value(value, context)
        except Exception:  # a var about something else (packages, sources)
            pass
    facts = task["ansible.builtin.set_fact"]
    assert _jinja_value(facts["_nv_targets"], context) == kern["targets"]
    assert _jinja_value(facts["_nv_missing_headers"], context) == kern["targets_without_headers"]


def test_modprobe_target_follows_debian_redirect():
    config = ("install nvidia modprobe -i nvidia-current-open $CMDLINE_OPTS\n"
              "install nvidia_modeset modprobe nvidia ; modprobe -i nvidia-current-open-modeset\n")
    assert driver.modprobe_target(config) == "nvidia-current-open"
    assert driver.modprobe_target("options nvidia NVreg_X=1\n") == "nvidia"


def test_provenance_rewritten_only_when_it_changes(tmp_path):
    path = str(tmp_path / "p" / "driver.json")
    rec = {"flavor": "p2p", "commit": "a" * 40, "build_time": "2026-01-01T00:00:00Z"}
    assert driver.write_provenance(rec, path) is True
    assert driver.write_provenance(dict(rec, build_time="2026-02-02T00:00:00Z"), path) is False
    assert driver.read_provenance(path)["build_time"] == "2026-01-01T00:00:00Z"
    assert driver.write_provenance(dict(rec, commit="b" * 40), path) is True


def test_p2p_source_secrets_cover_the_url_and_the_token_of_source_and_catalog():
    tok = "ghp_" + "x" * 36
    source = {"url": f"https://alice:{tok}@git.example.lan/fork.git", "branch": "b"}
    cat = {"lan": {"url": f"https://{tok}@git.example.lan/other.git"},
           "plain": {"url": "https://git.example.lan/plain.git"}}
    secrets = driver.p2p_source_secrets(source, cat)
    assert source["url"] in secrets and cat["lan"]["url"] in secrets and tok in secrets
    assert "https://git.example.lan/plain.git" not in secrets
    assert driver.p2p_source_secrets({"catalog": "aikitoria-570.86.16"}) == []
    assert driver.p2p_source_secrets(None, None) == []
