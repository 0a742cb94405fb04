"""Signed apt sources (rigctl.core.aptsource): key fingerprints from OpenPGP packets, the
pinned-key check, armor, NVIDIA's repository, deb822 sources and apt's refusals."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from rigctl.core import aptsource

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
GPG = shutil.which("gpg")
needs_gpg = pytest.mark.skipif(GPG is None, reason="gpg is not installed")


def key_file(name: str) -> bytes:
    return (KEYS / name).read_bytes()


def fingerprint_file(name: str) -> str:
    return (KEYS / name).read_text().strip()


TEST_FPR = fingerprint_file("test-mirror.fingerprint")
WRONG_FPR = fingerprint_file("wrong-key.fingerprint")
URL = "http://127.0.0.1:8600/signed/rigctl-test-mirror.pub"


@pytest.fixture
def gpg(tmp_path):
    """Run gpg in a throw-away home; skips when gpg is not installed."""
    if GPG is None:
        pytest.skip("gpg is not installed")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)

    def run(*args, data: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([GPG, "--homedir", str(home), "--batch", "--no-tty", *args], input=data,
                              capture_output=True, timeout=60, check=False)

    return run


def gpg_fingerprints(gpg, path: Path) -> list[str]:
    """Primary-key fingerprints per `gpg --show-keys --with-colons` (the fpr line after each pub)."""
    out = gpg("--show-keys", "--with-colons", str(path))
    assert out.returncode == 0, out.stderr.decode()
    fprs, want = [], False
    for line in out.stdout.decode().splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            want = True
        elif fields[0] == "fpr" and want:
            fprs.append(fields[9])
            want = False
    return fprs


def packet(tag: int, body: bytes) -> bytes:
    """A new-format OpenPGP packet (one- or two-octet length)."""
    if len(body) < 192:
        return bytes([0xC0 | tag, len(body)]) + body
    length = len(body) - 192
    return bytes([0xC0 | tag, (length >> 8) + 192, length & 0xFF]) + body


def primary_body(name: str) -> bytes:
    """The public-key packet body of a fixture key (old-format header, one-octet length)."""
    raw = aptsource.dearmor(key_file(name))
    assert raw[0] == 0x98  # old format, tag 6, one-octet length: what gpg writes for ed25519
    return raw[2:2 + raw[1]]


# --- fingerprints of the committed test keys -----------------------------------------


@pytest.mark.parametrize("name,fpr", [("test-mirror.pub.asc", TEST_FPR), ("wrong-key.pub.asc", WRONG_FPR)])
def test_key_fingerprints_armored(name, fpr):
    assert aptsource.key_fingerprints(key_file(name)) == [{"fingerprint": fpr, "subkeys": []}]
    # str input reads the same as bytes
    assert aptsource.key_fingerprints((KEYS / name).read_text()) == [{"fingerprint": fpr, "subkeys": []}]


def test_fixture_fingerprints_are_distinct_and_well_formed():
    assert TEST_FPR != WRONG_FPR
    for fpr in (TEST_FPR, WRONG_FPR):
        assert len(fpr) == 40 and fpr == fpr.upper() and int(fpr, 16) >= 0


@pytest.mark.parametrize("name,fpr", [("test-mirror.pub.asc", TEST_FPR), ("wrong-key.pub.asc", WRONG_FPR)])
def test_key_fingerprints_binary_via_dearmor(name, fpr):
    raw = aptsource.dearmor(key_file(name))
    assert not raw.startswith(b"-----")
    assert aptsource.dearmor(raw) is raw  # binary passes through
    assert aptsource.key_fingerprints(raw)[0]["fingerprint"] == fpr


@needs_gpg
@pytest.mark.parametrize("name,fpr", [("test-mirror.pub.asc", TEST_FPR), ("wrong-key.pub.asc", WRONG_FPR)])
def test_key_fingerprints_binary_via_gpg_dearmor(gpg, name, fpr):
    out = gpg("--dearmor", data=key_file(name))
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == aptsource.dearmor(key_file(name))
    assert aptsource.key_fingerprints(out.stdout)[0]["fingerprint"] == fpr


@needs_gpg
@pytest.mark.parametrize("name", ["test-mirror.pub.asc", "wrong-key.pub.asc"])
def test_key_fingerprints_agree_with_gpg(gpg, name):
    assert [k["fingerprint"] for k in aptsource.key_fingerprints(key_file(name))] == \
        gpg_fingerprints(gpg, KEYS / name)


@needs_gpg
def test_two_key_file_agrees_with_gpg(gpg, tmp_path):
    both = tmp_path / "both.asc"
    both.write_bytes(key_file("test-mirror.pub.asc") + key_file("wrong-key.pub.asc"))
    ours = [k["fingerprint"] for k in aptsource.key_fingerprints(both.read_bytes())]
    assert ours == [TEST_FPR, WRONG_FPR] == gpg_fingerprints(gpg, both)


@pytest.mark.parametrize("name", ["test-mirror.secret.asc", "wrong-key.secret.asc"])
def test_secret_key_file_refused(name):
    with pytest.raises(ValueError, match="secret key"):
        aptsource.key_fingerprints(key_file(name))
    with pytest.raises(ValueError, match="secret key"):
        aptsource.key_fingerprints(aptsource.dearmor(key_file(name)))


@pytest.mark.parametrize("data,match", [
    (b"", "no OpenPGP public key"),
    (b"hello, world\n", "not OpenPGP data"),
    (b"<html><body>404 Not Found</body></html>", "not OpenPGP data"),
    (b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEawLwVBYJ\n", "armored data without a PGP block"),
    (b"\x98\x33\x04\x00", "truncated OpenPGP packet"),
    (packet(13, b"only a user id <uid@rigctl.invalid>"), "no OpenPGP public key"),
    (bytes([0xC6, 0xE1]) + b"\x00" * 4, "partial-length"),
])
def test_garbage_refused(data, match):
    with pytest.raises(ValueError, match=match):
        aptsource.key_fingerprints(data)


def test_new_format_packet_header_gives_the_same_fingerprint():
    body = primary_body("test-mirror.pub.asc")
    assert aptsource.key_fingerprints(packet(6, body))[0]["fingerprint"] == TEST_FPR


def test_old_format_two_and_four_octet_lengths():
    body = primary_body("wrong-key.pub.asc")
    two = bytes([0x99]) + struct.pack(">H", len(body)) + body
    four = bytes([0x9A]) + struct.pack(">I", len(body)) + body
    assert aptsource.key_fingerprints(two)[0]["fingerprint"] == WRONG_FPR
    assert aptsource.key_fingerprints(four)[0]["fingerprint"] == WRONG_FPR


def test_subkeys_listed_under_their_primary():
    data = packet(6, primary_body("test-mirror.pub.asc")) + packet(14, primary_body("wrong-key.pub.asc"))
    assert aptsource.key_fingerprints(data) == [{"fingerprint": TEST_FPR, "subkeys": [WRONG_FPR]}]


def test_subkey_before_any_primary_refused():
    with pytest.raises(ValueError, match="subkey before any primary key"):
        aptsource.key_fingerprints(packet(14, primary_body("test-mirror.pub.asc")))


def test_version_6_key_fingerprint_is_sha256():
    # RFC 9580: SHA-256 over 0x9b, a four-octet length and the packet body; here a body long
    # enough for a two-octet new-format length.
    body = bytes([6]) + b"\x01" * 299
    want = hashlib.sha256(b"\x9b" + struct.pack(">I", len(body)) + body).hexdigest().upper()
    assert aptsource.key_fingerprints(packet(6, body)) == [{"fingerprint": want, "subkeys": []}]


@pytest.mark.parametrize("version", [3, 5])
def test_other_key_versions_refused(version):
    with pytest.raises(ValueError, match=f"key version {version} is not supported"):
        aptsource.key_fingerprints(packet(6, bytes([version]) + b"\x00" * 40))


def test_dearmor_skips_armor_headers_and_crlf():
    text = key_file("test-mirror.pub.asc").decode()
    text = text.replace("-----\n\n", "-----\nVersion: GnuPG v2\nComment: rigctl test\n\n", 1)
    assert aptsource.key_fingerprints(text)[0]["fingerprint"] == TEST_FPR
    assert aptsource.key_fingerprints(text.replace("\n", "\r\n"))[0]["fingerprint"] == TEST_FPR


# --- check_key -------------------------------------------------------------------------


@pytest.mark.parametrize("pinned", [
    TEST_FPR,
    TEST_FPR.lower(),
    " ".join(TEST_FPR[i:i + 4] for i in range(0, 40, 4)),
    "  " + TEST_FPR[:20].lower() + "\t" + TEST_FPR[20:] + "\n",
])
def test_check_key_pinned_ok(pinned):
    assert aptsource.check_key(key_file("test-mirror.pub.asc"), pinned, URL) == (True, None)


def test_normalize_fingerprint():
    assert aptsource.normalize_fingerprint("eb69 3b30 35cd\n5710") == "EB693B3035CD5710"
    assert aptsource.normalize_fingerprint(None) == ""


def test_check_key_wrong_fingerprint_names_both():
    ok, message = aptsource.check_key(key_file("wrong-key.pub.asc"), TEST_FPR.lower(), URL)
    assert ok is False
    assert message == f"the signing key at {URL} has fingerprint {WRONG_FPR}, not the pinned {TEST_FPR}"


def test_check_key_binary_key():
    raw = aptsource.dearmor(key_file("test-mirror.pub.asc"))
    assert aptsource.check_key(raw, TEST_FPR, URL) == (True, None)


def test_check_key_file_with_two_keys_refused_even_with_the_pinned_one_inside():
    both = key_file("test-mirror.pub.asc") + key_file("wrong-key.pub.asc")
    ok, message = aptsource.check_key(both, TEST_FPR, URL)
    assert ok is False
    assert f"holds 2 keys ({TEST_FPR}, {WRONG_FPR})" in message
    assert f"exactly the pinned key {TEST_FPR}" in message and URL in message


def test_check_key_accepts_a_pinned_subkey():
    data = packet(6, primary_body("wrong-key.pub.asc")) + packet(14, primary_body("test-mirror.pub.asc"))
    assert aptsource.check_key(data, TEST_FPR, URL) == (True, None)


@pytest.mark.parametrize("data,reason", [
    (b"<html>404 Not Found</html>", "not OpenPGP data"),
    (b"", "no OpenPGP public key"),
    (key_file("test-mirror.secret.asc"), "secret key"),
])
def test_check_key_not_a_key_refused(data, reason):
    ok, message = aptsource.check_key(data, TEST_FPR, URL)
    assert ok is False
    assert message.startswith(f"the signing key at {URL} is not usable: ")
    assert reason in message


# --- armor -------------------------------------------------------------------------------


@pytest.mark.parametrize("name,fpr", [("test-mirror.pub.asc", TEST_FPR), ("wrong-key.pub.asc", WRONG_FPR)])
def test_armor_round_trip(name, fpr):
    armored = aptsource.armor(aptsource.dearmor(key_file(name)))
    assert armored.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n")
    assert armored.endswith(b"-----END PGP PUBLIC KEY BLOCK-----\n")
    assert all(len(line) <= 64 for line in armored.splitlines())
    assert aptsource.key_fingerprints(armored)[0]["fingerprint"] == fpr
    assert aptsource.dearmor(armored) == aptsource.dearmor(key_file(name))
    # Same base64 wrapping and CRC-24 as gpg: the result is byte for byte gpg's own export.
    assert armored == key_file(name)


def test_armor_leaves_armored_data_alone():
    armored = key_file("test-mirror.pub.asc")
    assert aptsource.armor(armored) is armored


def test_armor_checksum_is_crc24():
    # RFC 4880 6.1 CRC-24 of no data is the init value 0xB704CE.
    assert aptsource.armor(b"").splitlines()[-2] == b"=" + base64.b64encode(b"\xb7\x04\xce")


@needs_gpg
def test_gpg_reads_armor_output(gpg, tmp_path):
    raw = aptsource.dearmor(key_file("wrong-key.pub.asc"))
    path = tmp_path / "keyring.asc"
    path.write_bytes(aptsource.armor(raw))
    assert gpg_fingerprints(gpg, path) == [WRONG_FPR]
    out = gpg("--dearmor", data=path.read_bytes())
    assert out.returncode == 0 and out.stdout == raw


@needs_gpg
def test_gpg_notices_a_bad_crc(gpg, tmp_path):
    # The control for the test above: gpg does check the CRC line armor() writes.
    armored = aptsource.armor(aptsource.dearmor(key_file("wrong-key.pub.asc"))).decode()
    lines = armored.splitlines()
    crc_at = next(i for i, line in enumerate(lines) if line.startswith("="))
    lines[crc_at] = "=AAAA" if lines[crc_at] != "=AAAA" else "=BBBB"
    path = tmp_path / "bad.asc"
    path.write_text("\n".join(lines) + "\n")
    out = gpg("--show-keys", "--with-colons", str(path))
    assert out.returncode != 0 and b"CRC error" in out.stderr


# --- NVIDIA's repository -----------------------------------------------------------------

NVIDIA_BASE = "https://developer.download.nvidia.com/compute/cuda/repos/"


@pytest.mark.parametrize("os_id,version,arch,distro", [
    ("debian", "12", "x86_64", "debian12"),
    ("debian", "13", "x86_64", "debian13"),
    ("ubuntu", "24.04", "x86_64", "ubuntu2404"),
    ("ubuntu", "22.04", "amd64", "ubuntu2204"),
])
def test_nvidia_repo_supported(os_id, version, arch, distro):
    got = aptsource.nvidia_repo({"id": os_id, "version_id": version}, arch)
    assert got["distro"] == distro
    assert got["url"] == f"{NVIDIA_BASE}{distro}/x86_64/"
    assert got["key_url"] == f"{NVIDIA_BASE}{distro}/x86_64/3bf863cc.pub"
    assert got["key_file"] == "3bf863cc.pub"
    assert got["fingerprint"] == "EB693B3035CD5710E231E123A4B469963BF863CC"


@pytest.mark.parametrize("os_facts,arch", [
    ({"id": "debian", "version_id": "11"}, "x86_64"),
    ({"id": "ubuntu", "version_id": "20.04"}, "x86_64"),
    ({"id": "fedora", "version_id": "40"}, "x86_64"),
    ({}, "x86_64"),
    ({"id": "debian", "version_id": "12"}, "aarch64"),
    ({"id": "ubuntu", "version_id": "24.04"}, "arm64"),
])
def test_nvidia_repo_unsupported_keeps_the_key_facts(os_facts, arch):
    got = aptsource.nvidia_repo(os_facts, arch)
    assert got["distro"] is None and got["url"] is None and got["key_url"] is None
    assert got["key_file"] == "3bf863cc.pub"
    assert got["fingerprint"] == aptsource.NVIDIA_KEY_FINGERPRINT


@pytest.mark.parametrize("mirror,key_url,want", [
    ("http://mirror.lan/cuda/debian12/x86_64/", None, "http://mirror.lan/cuda/debian12/x86_64/3bf863cc.pub"),
    ("http://mirror.lan/cuda/debian12/x86_64", None, "http://mirror.lan/cuda/debian12/x86_64/3bf863cc.pub"),
    ("file:///srv/cuda//", None, "file:///srv/cuda/3bf863cc.pub"),
    ("http://mirror.lan/nccl/", "http://mirror.lan/keys/nccl.asc", "http://mirror.lan/keys/nccl.asc"),
])
def test_mirror_key_url(mirror, key_url, want):
    assert aptsource.mirror_key_url(mirror, key_url) == want


# --- source files -------------------------------------------------------------------------

URLS = [
    "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/",
    "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/",
    "http://127.0.0.1:8600/signed/",
    "http://127.0.0.1:8600/wrong-key/",
    "http://127.0.0.1:8600/unsigned/",
    "http://127.0.0.1:8601/signed/",
    "file:///srv/mirror/cuda/",
    "http://mirror.lan/nvidia/cuda/debian12/x86_64/",
]


def test_source_name_readable():
    """The readable slug of the URL, then 8 hex digits of the URL's hash."""
    assert re.fullmatch(r"developer\.download\.nvidia\.com-compute-cuda-repos-debian12-x86-64-[0-9a-f]{8}",
                        aptsource.source_name(URLS[0]))
    assert re.fullmatch(r"127\.0\.0\.1-8600-wrong-key-[0-9a-f]{8}",
                        aptsource.source_name("http://127.0.0.1:8600/wrong-key/"))
    assert re.fullmatch(r"srv-mirror-cuda-[0-9a-f]{8}", aptsource.source_name("file:///srv/mirror/cuda/"))


@pytest.mark.parametrize("url", URLS)
def test_source_name_stable_and_safe(url):
    name = aptsource.source_name(url)
    assert name == aptsource.source_name(url)
    assert name == aptsource.source_name(url.rstrip("/"))
    assert 0 < len(name) <= 100
    assert all(c.isalnum() or c in ".-" for c in name)
    assert not name.startswith(("-", ".")) and not name.endswith(("-", "."))


def test_source_name_distinct_for_distinct_repositories():
    assert len({aptsource.source_name(u) for u in URLS}) == len(URLS)


@pytest.mark.parametrize("url", ["", None, "///"])
def test_source_name_fallback(url):
    assert re.fullmatch(r"repository-[0-9a-f]{8}", aptsource.source_name(url))


@pytest.mark.parametrize("a,b", [
    ("http://mirror.lan/nvidia/cuda/", "http://mirror.lan/nvidia-cuda/"),
    ("http://mirror.lan/" + "x" * 90 + "/debian12/", "http://mirror.lan/" + "x" * 90 + "/ubuntu2404/"),
])
def test_source_name_never_merges_two_repositories(a, b):
    assert aptsource.source_name(a) != aptsource.source_name(b)


def test_paths():
    assert aptsource.paths("srv-mirror") == (
        "/etc/apt/sources.list.d/rigctl-srv-mirror.sources",
        "/etc/apt/keyrings/rigctl-srv-mirror.asc",
        "/var/lib/rigctl/apt-key-srv-mirror.staged",
    )


def test_sources_text_flat_repository():
    text = aptsource.sources_text("nvidia-debian12", URLS[0], "/etc/apt/keyrings/rigctl-nvidia-debian12.asc")
    assert text == (
        "# Managed by rigctl: nvidia-debian12\n"
        "Types: deb\n"
        f"URIs: {URLS[0]}\n"
        "Suites: /\n"
        "Signed-By: /etc/apt/keyrings/rigctl-nvidia-debian12.asc\n"
    )
    assert "Components" not in text


def test_sources_text_with_components_and_comment():
    text = aptsource.sources_text("deb", "http://deb.debian.org/debian/", "/k.asc", suites="bookworm",
                                  components=["main", "non-free"], comment="Debian for CUDA")
    assert text.splitlines() == [
        "# Managed by rigctl: Debian for CUDA",
        "Types: deb",
        "URIs: http://deb.debian.org/debian/",
        "Suites: bookworm",
        "Components: main non-free",
        "Signed-By: /k.asc",
    ]


def test_sources_text_is_deb822():
    text = aptsource.sources_text("n", "http://x/", "/k.asc", components=("main",))
    fields = dict(line.split(": ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert fields == {"Types": "deb", "URIs": "http://x/", "Suites": "/", "Components": "main",
                      "Signed-By": "/k.asc"}


# --- apt-get update refusals (real apt 2.6 output, LC_ALL=C) -----------------------------

APT_WRONG_KEY = """\
Err:1 http://127.0.0.1:8600/wrong-key  InRelease
  The following signatures couldn't be verified because the public key is not available: NO_PUBKEY 62299D72576BF20F
W: GPG error: http://127.0.0.1:8600/wrong-key  InRelease: The following signatures couldn't be verified because the public key is not available: NO_PUBKEY 62299D72576BF20F
E: The repository 'http://127.0.0.1:8600/wrong-key  InRelease' is not signed.
"""  # noqa: E501 - apt's lines as printed

APT_UNSIGNED = """\
Ign:1 http://127.0.0.1:8600/unsigned  InRelease
Get:2 http://127.0.0.1:8600/unsigned  Release [433 B]
Ign:3 http://127.0.0.1:8600/unsigned  Release.gpg
E: The repository 'http://127.0.0.1:8600/unsigned  Release' is not signed.
"""

APT_CLEAN = """\
Get:1 http://127.0.0.1:8600/signed  InRelease [1,531 B]
Get:2 http://127.0.0.1:8600/signed  Packages [1,174 B]
Fetched 2,705 B in 0s (120 kB/s)
Reading package lists... Done
"""

# Captured with apt 2.6.1 against throw-away repositories served over http://.
APT_BAD_SIGNATURE = """\
Get:1 http://127.0.0.1:8651/bad  InRelease [476 B]
Err:1 http://127.0.0.1:8651/bad  InRelease
  The following signatures were invalid: BADSIG B24202E00A99B22B good test <g@x.invalid>
Reading package lists...
W: GPG error: http://127.0.0.1:8651/bad  InRelease: The following signatures were invalid: BADSIG B24202E00A99B22B good test <g@x.invalid>
E: The repository 'http://127.0.0.1:8651/bad  InRelease' is not signed.
"""  # noqa: E501

APT_EXPIRED = """\
Get:1 http://127.0.0.1:8651/repo  InRelease [476 B]
Err:1 http://127.0.0.1:8651/repo  InRelease
  The following signatures were invalid: EXPKEYSIG 0E620F06E8ACED90 expired test <e@x.invalid>
Reading package lists...
W: GPG error: http://127.0.0.1:8651/repo  InRelease: The following signatures were invalid: EXPKEYSIG 0E620F06E8ACED90 expired test <e@x.invalid>
E: The repository 'http://127.0.0.1:8651/repo  InRelease' is not signed.
"""  # noqa: E501

APT_CLEAN_NO_TTY = """\
Get:1 http://127.0.0.1:8651/good  InRelease [476 B]
Fetched 476 B in 0s (2759 B/s)
Reading package lists...
"""

# The outputs below follow apt 2.6's format (not captured). A wrong mirror URL: the web server
# answers 404 for InRelease and Release.
APT_NOT_FOUND = """\
Ign:1 http://mirror.lan/cuda/debian12/x86_64  InRelease
Err:2 http://mirror.lan/cuda/debian12/x86_64  Release
  404  Not Found [IP: 192.0.2.10 80]
Reading package lists...
E: The repository 'http://mirror.lan/cuda/debian12/x86_64  Release' does not have a Release file.
"""

APT_UNREACHABLE = """\
Err:1 http://mirror.lan/cuda/debian12/x86_64  InRelease
  Temporary failure resolving 'mirror.lan'
Reading package lists...
W: Failed to fetch http://mirror.lan/cuda/debian12/x86_64/InRelease  Temporary failure resolving 'mirror.lan'
W: Some index files failed to download. They have been ignored, or old ones used instead.
"""

APT_HASH = """\
Get:1 http://127.0.0.1:8600/signed  InRelease [1,531 B]
Get:2 http://127.0.0.1:8600/signed  Packages [1,175 B]
Err:2 http://127.0.0.1:8600/signed  Packages
  File has unexpected size (1175 != 1174). Mirror sync in progress? [IP: 127.0.0.1 8600]
  Hashes of expected file:
   - Filesize:1174 [weak]
E: Failed to fetch http://127.0.0.1:8600/signed/Packages  File has unexpected size (1175 != 1174). Mirror sync in progress? [IP: 127.0.0.1 8600]
E: Some index files failed to download. They have been ignored, or old ones used instead.
"""  # noqa: E501


def test_classify_wrong_key():
    assert aptsource.classify_apt_update(APT_WRONG_KEY) == (
        "unknown-key",
        "the repository is signed by key 62299D72576BF20F, not by the pinned key apt was given")


def test_classify_unsigned():
    assert aptsource.classify_apt_update(APT_UNSIGNED) == (
        "unsigned", "the repository is not signed (no InRelease/Release.gpg)")


def test_classify_bad_signature():
    assert aptsource.classify_apt_update(APT_BAD_SIGNATURE) == (
        "bad-signature", "the repository's signature does not verify")


@pytest.mark.parametrize("output,kind", [(APT_HASH, "hash-mismatch"), (APT_UNREACHABLE, "unreachable")])
def test_classify_other_failures(output, kind):
    assert aptsource.classify_apt_update(output)[0] == kind


@pytest.mark.parametrize("output", [APT_CLEAN, APT_CLEAN_NO_TTY, "", None])
def test_classify_clean_update(output):
    assert aptsource.classify_apt_update(output) == (None, None)


def test_classify_expired_key():
    assert aptsource.classify_apt_update(APT_EXPIRED) == (
        "expired", "the repository's signing key has expired")


def test_classify_missing_repository_as_unreachable():
    assert aptsource.classify_apt_update(APT_NOT_FOUND)[0] == "unreachable"


def test_apt_problem_lines_wrong_key():
    lines = aptsource.apt_problem_lines(APT_WRONG_KEY)
    assert lines == [
        "Err:1 http://127.0.0.1:8600/wrong-key  InRelease",
        "W: GPG error: http://127.0.0.1:8600/wrong-key  InRelease: The following signatures couldn't be "
        "verified because the public key is not available: NO_PUBKEY 62299D72576BF20F",
        "E: The repository 'http://127.0.0.1:8600/wrong-key  InRelease' is not signed.",
    ]


def test_apt_problem_lines_unsigned_skips_progress_lines():
    assert aptsource.apt_problem_lines(APT_UNSIGNED) == [
        "E: The repository 'http://127.0.0.1:8600/unsigned  Release' is not signed."]


@pytest.mark.parametrize("output", [APT_CLEAN, APT_CLEAN_NO_TTY, "", None])
def test_apt_problem_lines_clean(output):
    assert aptsource.apt_problem_lines(output) == []


def test_apt_problem_lines_limit():
    output = "".join(f"E: problem {i}\n" for i in range(10))
    assert aptsource.apt_problem_lines(output) == [f"E: problem {i}" for i in range(6)]
    assert aptsource.apt_problem_lines(output, limit=2) == ["E: problem 0", "E: problem 1"]
