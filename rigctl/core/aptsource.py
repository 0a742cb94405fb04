"""Signed apt sources: the one place that decides whether a repository's key is the pinned
one, writes the source with its own keyring (never apt's global trust), and explains apt's
signature refusals. Used by the ``rig_apt_source`` module (driver, CUDA and NCCL roles) and
the verification suites.

Stdlib only, Python 3.9 syntax: shipped to managed hosts as module_utils.

Key fingerprints are computed here from the OpenPGP packets (RFC 4880 version 4 keys:
SHA-1 over ``0x99 || length || public key packet body``; RFC 9580 version 6 keys: SHA-256
over ``0x9b || length32 || body``), so the check does not depend on gpg being installed on
the rig.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct

STATE_DIR = "/var/lib/rigctl"
SOURCES_DIR = "/etc/apt/sources.list.d"
KEYRING_DIR = "/etc/apt/keyrings"

# NVIDIA's CUDA apt repository (driver, toolkit, NCCL): one flat repository per distribution
# release, signed by one key (id 3bf863cc, in use since 2022) whose fingerprint is pinned.
NVIDIA_REPO_BASE = "https://developer.download.nvidia.com/compute/cuda/repos/"
NVIDIA_REPO_DISTROS = {
    ("debian", "12"): "debian12",
    ("debian", "13"): "debian13",
    ("ubuntu", "22.04"): "ubuntu2204",
    ("ubuntu", "24.04"): "ubuntu2404",
}
NVIDIA_KEY_FILE = "3bf863cc.pub"
NVIDIA_KEY_FINGERPRINT = "EB693B3035CD5710E231E123A4B469963BF863CC"

_TAG_PUBLIC_KEY = 6
_TAG_PUBLIC_SUBKEY = 14
_TAG_SECRET_KEY = 5
_TAG_SECRET_SUBKEY = 7


def nvidia_repo(os_facts, arch="x86_64"):
    """NVIDIA's repository for this OS: ``{"distro", "url", "key_url", "key_file",
    "fingerprint"}``; ``distro``/``url``/``key_url`` are None when NVIDIA has no repository
    for it (the key facts stay: a mirror may still carry NVIDIA's key)."""
    distro = NVIDIA_REPO_DISTROS.get((os_facts.get("id"), os_facts.get("version_id")))
    if arch not in ("x86_64", "amd64"):
        distro = None
    url = "%s%s/x86_64/" % (NVIDIA_REPO_BASE, distro) if distro else None
    return {"distro": distro, "url": url, "key_url": url + NVIDIA_KEY_FILE if url else None,
            "key_file": NVIDIA_KEY_FILE, "fingerprint": NVIDIA_KEY_FINGERPRINT}


def mirror_key_url(mirror_url, key_url=None):
    """Where a mirror's key file is: ``key_url`` when set, else NVIDIA's key file name at
    the mirror's root (a plain mirror keeps NVIDIA's key)."""
    if key_url:
        return key_url
    return (mirror_url or "").rstrip("/") + "/" + NVIDIA_KEY_FILE


def dearmor(data):
    """ASCII-armored OpenPGP data -> bytes (binary data is returned as is). Several armor
    blocks are concatenated."""
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if b"-----BEGIN PGP" not in data:
        return data
    out = b""
    text = data.decode("ascii", "replace")
    for block in re.finditer(r"-----BEGIN PGP [A-Z ]+-----\r?\n(.*?)-----END PGP [A-Z ]+-----", text, re.S):
        body = block.group(1)
        # Armor headers end at the first empty line (when there are any).
        if re.search(r"^[A-Za-z-]+: ", body, re.M) and "\n\n" in body.replace("\r\n", "\n"):
            body = body.replace("\r\n", "\n").split("\n\n", 1)[1]
        lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith("=")]  # CRC24 checksum line
        out += base64.b64decode("".join(lines))
    if not out:
        raise ValueError("armored data without a PGP block")
    return out


def _packets(data):
    """(tag, body) for each OpenPGP packet."""
    pos = 0
    while pos < len(data):
        ctb = data[pos]
        if not ctb & 0x80:
            raise ValueError("not OpenPGP data (bad packet header at byte %d)" % pos)
        pos += 1
        if ctb & 0x40:  # new format
            tag = ctb & 0x3F
            first = data[pos]
            if first < 192:
                length, pos = first, pos + 1
            elif first < 224:
                length, pos = ((first - 192) << 8) + data[pos + 1] + 192, pos + 2
            elif first == 255:
                length, pos = struct.unpack(">I", data[pos + 1:pos + 5])[0], pos + 5
            else:
                raise ValueError("partial-length packets are not used in keys")
        else:  # old format
            tag = (ctb >> 2) & 0x0F
            ltype = ctb & 0x03
            if ltype == 0:
                length, pos = data[pos], pos + 1
            elif ltype == 1:
                length, pos = struct.unpack(">H", data[pos:pos + 2])[0], pos + 2
            elif ltype == 2:
                length, pos = struct.unpack(">I", data[pos:pos + 4])[0], pos + 4
            else:
                length = len(data) - pos
        if pos + length > len(data):
            raise ValueError("truncated OpenPGP packet")
        yield tag, data[pos:pos + length]
        pos += length


def _fingerprint(body):
    version = body[0] if body else 0
    if version == 4:
        return hashlib.sha1(b"\x99" + struct.pack(">H", len(body)) + body).hexdigest().upper()
    if version == 6:
        return hashlib.sha256(b"\x9b" + struct.pack(">I", len(body)) + body).hexdigest().upper()
    raise ValueError("OpenPGP key version %d is not supported" % version)


def key_fingerprints(data):
    """The keys in an OpenPGP key file (armored or binary): a list of
    ``{"fingerprint", "subkeys": [...]}``, one per primary key. Raises ValueError when the
    data is not an OpenPGP public key file (or holds a secret key)."""
    raw = dearmor(data)
    keys = []
    for tag, body in _packets(raw):
        if tag in (_TAG_SECRET_KEY, _TAG_SECRET_SUBKEY):
            raise ValueError("the file holds a secret key, not a public key")
        if tag == _TAG_PUBLIC_KEY:
            keys.append({"fingerprint": _fingerprint(body), "subkeys": []})
        elif tag == _TAG_PUBLIC_SUBKEY:
            if not keys:
                raise ValueError("subkey before any primary key")
            keys[-1]["subkeys"].append(_fingerprint(body))
    if not keys:
        raise ValueError("no OpenPGP public key in the file")
    return keys


def normalize_fingerprint(value):
    return re.sub(r"\s+", "", str(value or "")).upper()


def check_key(data, pinned, url):
    """Whether a downloaded key file is exactly the pinned key: one primary key, with the
    pinned fingerprint (the primary's or a subkey's). Returns (ok, message)."""
    pinned = normalize_fingerprint(pinned)
    try:
        keys = key_fingerprints(data)
    except ValueError as exc:
        return False, "the signing key at %s is not usable: %s" % (url, exc)
    found = [k["fingerprint"] for k in keys]
    if len(keys) > 1:
        return False, ("the key file at %s holds %d keys (%s); rigctl trusts a repository key "
                       "file only when it holds exactly the pinned key %s"
                       % (url, len(keys), ", ".join(found), pinned))
    key = keys[0]
    if pinned != key["fingerprint"] and pinned not in key["subkeys"]:
        return False, ("the signing key at %s has fingerprint %s, not the pinned %s"
                       % (url, key["fingerprint"], pinned))
    return True, None


def sources_text(name, url, keyring, suites="/", components=(), comment=None):
    """A deb822 ``.sources`` file with its own ``Signed-By`` keyring."""
    lines = ["# Managed by rigctl: %s" % (comment or name), "Types: deb", "URIs: %s" % url,
             "Suites: %s" % suites]
    if components:
        lines.append("Components: %s" % " ".join(components))
    lines.append("Signed-By: %s" % keyring)
    return "\n".join(lines) + "\n"


def armor(data):
    """Binary OpenPGP public key data -> ASCII armor (what ``Signed-By: *.asc`` reads)."""
    if b"-----BEGIN PGP" in data:
        return data
    crc = 0xB704CE
    for byte in bytearray(data):
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    crc &= 0xFFFFFF
    b64 = base64.b64encode(data).decode("ascii")
    body = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    checksum = base64.b64encode(struct.pack(">I", crc)[1:]).decode("ascii")
    return ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n%s\n=%s\n-----END PGP PUBLIC KEY BLOCK-----\n"
            % (body, checksum)).encode("ascii")


def source_name(url):
    """A readable file-name stem for a repository URL (the same URL always gives the same
    name, so the driver, CUDA and NCCL roles share one source when they use one repository)."""
    match = re.match(r"^[a-z]+://([^/]*)(/.*)?$", url or "")
    rest = (match.group(1) + (match.group(2) or "")) if match else (url or "")
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", rest).strip("-.")[:80] or "repository"
    # Distinct URLs that read the same as a slug (nvidia/cuda vs nvidia-cuda) stay apart.
    digest = hashlib.sha256((url or "").rstrip("/").encode("utf-8")).hexdigest()[:8]
    return "%s-%s" % (slug, digest)


def paths(name):
    """(sources file, keyring, staged key) of a source named ``name``."""
    return ("%s/rigctl-%s.sources" % (SOURCES_DIR, name), "%s/rigctl-%s.asc" % (KEYRING_DIR, name),
            "%s/apt-key-%s.staged" % (STATE_DIR, name))


# Checked in this order: apt ends most signature refusals with "... is not signed", so the
# specific causes come before that generic line.
_APT_PATTERNS = (
    (r"NO_PUBKEY ([0-9A-F]+)", "unknown-key",
     "the repository is signed by key {0}, not by the pinned key apt was given"),
    (r"EXPKEYSIG|KEYEXPIRED", "expired", "the repository's signing key has expired"),
    (r"BADSIG|bad signature|The following signatures were invalid", "bad-signature",
     "the repository's signature does not verify"),
    (r"Clearsigned file isn't valid|NOSPLIT", "invalid",
     "the repository's InRelease is not a valid signed file"),
    (r"Hash Sum mismatch|File has unexpected size", "hash-mismatch",
     "the repository's index files do not match its Release file"),
    (r"does not have a Release file|404\s+Not Found", "unreachable",
     "there is no apt repository at that URL (no Release file: check the URL)"),
    (r"is not signed", "unsigned", "the repository is not signed (no InRelease/Release.gpg)"),
    (r"signatures couldn't be verified", "bad-signature", "the repository's signature does not verify"),
    (r"Failed to fetch|Could not connect|Connection failed|Temporary failure resolving",
     "unreachable", "the repository could not be fetched"),
)


def classify_apt_update(output):
    """Why a targeted ``apt-get update`` of one source failed: (kind, text) or (None, None)
    when the output shows no problem."""
    for pattern, kind, text in _APT_PATTERNS:
        match = re.search(pattern, output or "")
        if match:
            return kind, text.format(*match.groups())
    return None, None


def apt_problem_lines(output, limit=6):
    return [ln.strip() for ln in (output or "").splitlines()
            if ln.startswith(("E:", "W:", "Err:"))][:limit]
