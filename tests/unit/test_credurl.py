"""Credentials in URLs: split off, masked, and handed to a real git over HTTP on 127.0.0.1
without a command line, a config file or a trace on disk (rigctl.core.credurl)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import types
from pathlib import Path

import pytest

from rigctl.core import credurl, driver
from tests.fixtures import git_http_server

TOKEN = "ghp_S3cretT0kenValue0123456789abcdef"


@pytest.mark.parametrize(
    ("url", "clean", "user", "password"),
    [
        (f"https://alice:{TOKEN}@git.example/o/r.git", "https://git.example/o/r.git", "alice", TOKEN),
        (f"https://{TOKEN}@github.com/o/r", "https://github.com/o/r", TOKEN, ""),
        ("https://u:p%40ss%3Aw@h:8443/r?x=1", "https://h:8443/r?x=1", "u", "p@ss:w"),
        ("https://github.com/o/r.git", "https://github.com/o/r.git", None, None),
        ("ssh://git@github.com/o/r.git", "ssh://git@github.com/o/r.git", None, None),
        ("git@github.com:o/r.git", "git@github.com:o/r.git", None, None),
        ("file:///srv/forks/f.git", "file:///srv/forks/f.git", None, None),
        ("/srv/forks/f.git", "/srv/forks/f.git", None, None),
    ],
)
def test_split_credentials(url, clean, user, password):
    assert credurl.split_credentials(url) == (clean, user, password)


def test_a_password_git_cannot_use_is_refused_without_showing_it():
    with pytest.raises(ValueError) as exc:
        credurl.split_credentials("ssh://git:hunter2secret@host/r.git")
    assert "hunter2secret" not in str(exc.value)
    assert "ssh://***@host/r.git" in str(exc.value)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("https://alice:tok@host/r", "https://***@host/r"),
        ("https://tok@host/r", "https://***@host/r"),
        ("cannot fetch from 'https://a:b@h/x' or http://c@d/y", "cannot fetch from 'https://***@h/x' or http://***@d/y"),
        ("ssh://git@github.com/o/r", "ssh://git@github.com/o/r"),
        ("ssh://git:pw@github.com/o/r", "ssh://***@github.com/o/r"),
        ("mail me at a@b.c", "mail me at a@b.c"),
        ("https://host/r", "https://host/r"),
    ],
)
def test_mask_text(text, masked):
    assert credurl.mask_text(text) == masked
    assert credurl.has_credentials(text) == ("***" in masked)


def test_resolved_p2p_source_carries_no_credentials():
    src = {"url": f"https://bob:{TOKEN}@git.example/fork.git", "branch": "535.261.03-p2p",
           "commit": "a" * 40}
    resolved = driver.resolve_p2p_source(src)
    assert resolved["url"] == "https://git.example/fork.git"
    assert TOKEN not in repr(resolved)
    assert driver.p2p_source_credentials(src) == ("bob", TOKEN)
    cat = driver.resolve_p2p_source({"catalog": next(iter(driver.catalog.P2P_CATALOG)),
                                     "url": f"https://{TOKEN}@mirror.example/m.git"})
    assert cat["url"] == "https://mirror.example/m.git"


def test_no_credentials_no_environment():
    assert credurl.git_credential_env("file:///f", None, None) == {}


# --- a real git over HTTP with Basic authentication, on 127.0.0.1 ----------------------

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None or not Path(git_http_server.BACKEND).exists(),
                               reason="git and git-http-backend needed")


def _git(*args, cwd=None, env=None):
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd or "/nonexistent"),
            "LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run([GIT, *args], cwd=cwd, env=dict(base, **(env or {})), capture_output=True,
                          text=True)


@pytest.fixture
def fork(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    ident = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid", "GIT_COMMITTER_NAME": "t",
             "GIT_COMMITTER_EMAIL": "t@t.invalid"}
    assert _git("init", "-q", "-b", "p2p", str(src)).returncode == 0
    (src / "version.mk").write_text("NVIDIA_VERSION = 535.261.03\n")
    assert _git("add", "-A", cwd=src).returncode == 0
    assert _git("commit", "-q", "-m", "x", cwd=src, env=ident).returncode == 0
    root = tmp_path / "srv"
    root.mkdir()
    assert _git("clone", "-q", "--bare", str(src), str(root / "fork.git")).returncode == 0
    commit = _git("rev-parse", "HEAD", cwd=src).stdout.strip()
    log: list[dict] = []
    server = git_http_server.make_server(str(root), "alice", TOKEN, log=log)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield types.SimpleNamespace(port=server.server_address[1], log=log), commit
    finally:
        server.shutdown()
        server.server_close()


@needs_git
def test_git_fetches_with_the_token_from_the_environment_only(fork, tmp_path):
    server, commit = fork
    url = f"http://alice:{TOKEN}@127.0.0.1:{server.port}/fork.git"
    clean, user, password = credurl.split_credentials(url)
    assert TOKEN not in clean
    repo = tmp_path / "cache"
    assert _git("init", "-q", str(repo)).returncode == 0
    argv = ["fetch", "-q", "--no-tags", clean, "+refs/heads/p2p:refs/rigctl/p2p"]
    env = credurl.git_credential_env(clean, user, password)
    assert not any(TOKEN in v for k, v in env.items() if k != "RIGCTL_GIT_PASSWORD")
    proc = _git(*argv, cwd=repo, env=env)
    assert proc.returncode == 0, proc.stderr
    assert _git("rev-parse", "refs/rigctl/p2p", cwd=repo).stdout.strip() == commit
    # the server did get the token, through git's credential helper
    assert any(e["authorized"] for e in server.log)
    # no command line on the machine carried it while git talked to the server
    assert any(clean in c for e in server.log for c in e["cmdlines"])  # git's own were seen
    assert not [e for e in server.log if e["token_in_cmdlines"]]
    # nothing in the repository has it (config, FETCH_HEAD, logs, packed refs...)
    for f in (repo / ".git").rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f
    assert TOKEN not in proc.stdout + proc.stderr


@needs_git
def test_the_helper_answers_only_for_the_urls_host(fork, tmp_path):
    server, _ = fork
    clean = f"http://127.0.0.1:{server.port}/fork.git"
    env = credurl.git_credential_env(f"http://elsewhere.invalid:{server.port}/fork.git", "alice", TOKEN)
    repo = tmp_path / "cache"
    assert _git("init", "-q", str(repo)).returncode == 0
    proc = _git("fetch", "-q", clean, "refs/heads/p2p", cwd=repo, env=env)
    assert proc.returncode != 0
    assert server.log and not [e for e in server.log if e["auth_sent"]]  # never sent elsewhere


# --- what a P2P source refusal says changed ------------------------------------------------

BEFORE = ["ii  base-files", "ii  python3", "rc  oldpkg", "un  never"]


def test_refusal_says_nothing_changed_when_no_package_was_added():
    assert driver.p2p_check_changes(BEFORE, BEFORE, False) == "Nothing was changed."
    assert driver.p2p_check_changes(BEFORE, BEFORE, True) == (
        "Nothing was changed (apt's package lists were refreshed)."
    )


def test_refusal_names_exactly_the_packages_installing_git_added():
    now = ["ii  base-files", "ii  python3", "ii  git", "ii  perl:amd64", "ii  liberror-perl",
           "rc  oldpkg", "iU  half-installed"]
    msg = driver.p2p_check_changes(BEFORE, now, False)
    assert msg == (
        "Changed before this check: git was installed to fetch the source, adding 3 packages: "
        "git, liberror-perl, perl (they stay; `apt-get purge git liberror-perl perl` removes "
        "them); nothing else was changed."
    )
    one = driver.p2p_check_changes(BEFORE, ["ii  base-files", "ii  python3", "ii  git"], True)
    assert "adding 1 package: git (it stays;" in one and "package lists were refreshed" in one


def test_installed_packages_reads_dpkg_query_lines():
    assert driver.installed_packages(["ii  a", "ii  b:arm64", "rc  c", "", "garbage"]) == {"a", "b"}
