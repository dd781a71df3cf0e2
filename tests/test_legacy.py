"""Files from the previous backup tool: `encpipe open --legacy`, `inspect --legacy`.

The vectors in tests/vectors/legacy/ were made with Node's crypto module by
generate.js there, following the previous tool's code; manifest.json says what
each one holds and which key opens it.
"""

import hashlib
import io
import json
import os
import subprocess
import sys

import pytest

from cliutil import secret_file
from fuzz.fuzz_encpipe import Pipe

from encpipe import cli, legacy
from encpipe.errors import NoKeyConfigured, NoMatchingKey
from encpipe.keys import KeyLoader, KeySources

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "vectors", "legacy")
with open(os.path.join(VECTORS, "manifest.json")) as _f:
    MANIFEST = json.load(_f)["vectors"]
VALID = [v for v in MANIFEST if v["expect"] == "ok"]
INVALID = [v for v in MANIFEST if v["expect"] != "ok"]
PASSPHRASE_VECTORS = [v for v in VALID if v["setting_kind"] == "passphrase"]
EXIT_FOR = {"auth-failure": 77, "too-short": 65}
OTHER_KEY = "9bc26789b9ecc1604786e33c6859cd3d321057fc379eea737f55c51ff6f061d4"


def ids(vectors):
    return [v["file"] for v in vectors]


def vector_path(v):
    return os.path.join(VECTORS, v["file"])


def vector_bytes(v):
    with open(vector_path(v), "rb") as f:
        return f.read()


def run(argv, stdin=b"", env=None):
    """encpipe in this process: (status, stdout bytes, stderr text)."""
    out, err = io.BytesIO(), io.StringIO()
    source = stdin if hasattr(stdin, "read") else io.BytesIO(stdin)
    status = cli.main(argv, stdin=source, stdout=out, stderr=err, env=env or {})
    return status, out.getvalue(), err.getvalue()


def run_process(argv, stdin_path=None, pipe_from=None, env=None):
    """encpipe as a process; its input a file, or a real pipe fed by `cat`."""
    command = [sys.executable, "-m", "encpipe", *argv]
    full_env = {"PATH": os.environ["PATH"], **(env or {})}
    if pipe_from:
        cat = subprocess.Popen(["cat", pipe_from], stdout=subprocess.PIPE)
        try:
            done = subprocess.run(command, stdin=cat.stdout, capture_output=True, env=full_env, timeout=60)
        finally:
            cat.stdout.close()
            cat.wait()
        return done.returncode, done.stdout, done.stderr.decode()
    with open(stdin_path or os.devnull, "rb") as stdin:
        done = subprocess.run(command, stdin=stdin, capture_output=True, env=full_env, timeout=60)
    return done.returncode, done.stdout, done.stderr.decode()


def assert_plaintext(v, data):
    assert len(data) == v["plaintext_bytes"]
    assert hashlib.sha256(data).hexdigest() == v["plaintext_sha256"]


def assert_one_error(stderr, fragment=""):
    lines = stderr.splitlines()
    assert lines and lines[0].startswith("encpipe: error: "), stderr
    assert all(line.startswith(("encpipe: error: ", "encpipe: hint: ")) for line in lines), stderr
    assert "Traceback" not in stderr
    assert fragment in lines[0]


# --- acceptance 1: every valid vector opens byte-exact ---------------------


@pytest.mark.parametrize("v", VALID, ids=ids(VALID))
@pytest.mark.parametrize("via", ["file", "pipe"])
def test_valid_vector_opens_with_old_setting(v, via):
    env = {"BACKUP_ENCRYPTION_KEY": v["setting"]}
    if via == "file":
        status, out, err = run(["open", "--legacy", vector_path(v)], env=env)
    else:
        status, out, err = run(["open", "--legacy"], stdin=Pipe(vector_bytes(v)), env=env)
    assert (status, err) == (0, "")
    assert_plaintext(v, out)


@pytest.mark.parametrize("v", VALID, ids=ids(VALID))
def test_valid_vector_opens_with_hex_key(v, tmp_path):
    """The AES key itself (for a passphrase vector, the key PBKDF2 made) as a raw key."""
    status, out, err = run(["open", "--legacy", vector_path(v)], env={"ENCPIPE_KEY": v["aes_key"]})
    assert (status, err) == (0, "")
    assert_plaintext(v, out)
    keyring = secret_file(tmp_path, "keys", f"# two keys\n{OTHER_KEY}\n{v['aes_key']}\n".encode())
    status, out, err = run(["open", "--legacy", "--key-file", keyring], stdin=Pipe(vector_bytes(v)))
    assert (status, err) == (0, "")
    assert_plaintext(v, out)


@pytest.mark.parametrize("v", PASSPHRASE_VECTORS, ids=ids(PASSPHRASE_VECTORS))
def test_passphrase_vector_opens_with_passphrase_sources(v, tmp_path):
    passfile = secret_file(tmp_path, "pass", v["setting"].encode() + b"\n")
    status, out, err = run(["open", "--legacy", "--passphrase-file", passfile, vector_path(v)])
    assert (status, err) == (0, "")
    assert_plaintext(v, out)
    status, out, err = run(["open", "--legacy", vector_path(v)], env={"ENCPIPE_PASSPHRASE": v["setting"]})
    assert (status, err) == (0, "")
    assert_plaintext(v, out)


def test_large_vector_opens_in_a_process_from_a_file_and_from_a_pipe():
    (v,) = [v for v in VALID if v["file"] == "large-passphrase.sql.enc"]
    env = {"BACKUP_ENCRYPTION_KEY": v["setting"]}
    for result in (
        run_process(["open", "--legacy", vector_path(v)], env=env),
        run_process(["open", "--legacy"], stdin_path=vector_path(v), env=env),
        run_process(["open", "--legacy"], pipe_from=vector_path(v), env=env),
    ):
        status, out, err = result
        assert (status, err) == (0, "")
        assert_plaintext(v, out)


# --- acceptance 2: tampered, truncated, wrong key: non-zero, no output ------


@pytest.mark.parametrize("v", INVALID, ids=ids(INVALID))
@pytest.mark.parametrize("via", ["file", "pipe"])
def test_invalid_vector_fails_without_output(v, via):
    env = {"BACKUP_ENCRYPTION_KEY": v["setting"]}
    if via == "file":
        status, out, err = run(["open", "--legacy", vector_path(v)], env=env)
    else:
        status, out, err = run(["open", "--legacy"], stdin=Pipe(vector_bytes(v)), env=env)
    assert status == EXIT_FOR[v["expect"]]
    assert out == b""
    assert_one_error(err)


@pytest.mark.parametrize("v", INVALID, ids=ids(INVALID))
def test_invalid_vector_fails_with_raw_key_too(v):
    status, out, err = run(["open", "--legacy", vector_path(v)], env={"ENCPIPE_KEY": v["aes_key"]})
    assert (status, out) == (EXIT_FOR[v["expect"]], b"")


@pytest.mark.parametrize("name", ["tampered-ciphertext", "truncated", "truncated-header", "wrong-key"])
@pytest.mark.parametrize("via", ["file", "pipe"])
def test_invalid_vector_fails_in_a_process(name, via):
    (v,) = [v for v in INVALID if v["file"] == f"{name}.sql.enc"]
    env = {"BACKUP_ENCRYPTION_KEY": v["setting"]}
    if via == "file":
        status, out, err = run_process(["open", "--legacy", vector_path(v)], env=env)
    else:
        status, out, err = run_process(["open", "--legacy"], pipe_from=vector_path(v), env=env)
    assert status == EXIT_FOR[v["expect"]]
    assert out == b""
    assert_one_error(err)


def test_auth_failure_message_names_what_was_tried():
    (v,) = [v for v in INVALID if v["file"] == "wrong-passphrase.sql.enc"]
    status, _, err = run(["open", "--legacy", vector_path(v)], env={"BACKUP_ENCRYPTION_KEY": v["setting"]})
    assert status == 77
    assert err == (
        "encpipe: error: no supplied key authenticates this legacy file\n"
        "encpipe: hint: the key is wrong, or the file is damaged or truncated (the old format cannot "
        "tell which); tried: BACKUP_ENCRYPTION_KEY (passphrase)\n"
    )


def test_short_file_is_invalid_stream():
    status, out, err = run(["open", "--legacy"], stdin=b"x" * 63, env={"ENCPIPE_KEY": OTHER_KEY})
    assert (status, out) == (65, b"")
    assert err == "encpipe: error: not a legacy file: 63 bytes, less than its 64-byte header\n"
    status, out, err = run(["open", "--legacy"], stdin=b"", env={"ENCPIPE_KEY": OTHER_KEY})
    assert (status, out) == (65, b"")
    assert "empty input" in err


# --- keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting, kind",
    [
        ("ab" * 32, "hex key"),
        ("AB" * 32, "hex key"),
        ("aB" * 32, "hex key"),
        ("ab" * 31 + "a", "passphrase"),  # 63 hex digits
        ("ab" * 32 + "a", "passphrase"),  # 65
        ("ab" * 32 + "\n", "passphrase"),  # no trimming, as in the old code
        (" " + "ab" * 32, "passphrase"),
        ("ab" * 31 + "ag", "passphrase"),  # 64 characters, one not hex
    ],
)
def test_old_setting_rule(setting, kind):
    key = legacy.key_from_setting(setting)
    assert key.label == f"BACKUP_ENCRYPTION_KEY ({kind})"
    if kind == "hex key":
        assert key.key == bytes.fromhex(setting)
    else:
        expected = hashlib.pbkdf2_hmac(
            "sha256", setting.encode(), hashlib.sha256(b"ediscovery-backup-salt").digest(), 100000, 32
        )
        assert key.key == expected


def test_empty_setting_is_no_key():
    assert legacy.key_from_setting("") is None
    status, out, err = run(["open", "--legacy", vector_path(VALID[0])], env={"BACKUP_ENCRYPTION_KEY": ""})
    assert (status, out) == (78, b"")
    assert err.splitlines()[1].startswith("encpipe: hint: set BACKUP_ENCRYPTION_KEY")


def test_key_repr_hides_the_secret():
    key = legacy.key_from_setting("ab" * 32)
    assert "abab" not in repr(key)


def test_no_key_at_all_is_78_and_names_the_old_variable():
    status, out, err = run(["open", "--legacy", vector_path(VALID[0])], env={})
    assert (status, out) == (78, b"")
    assert "BACKUP_ENCRYPTION_KEY" in err


def test_key_options_win_over_the_environment(tmp_path):
    """As for ENCPIPE_KEY: with a key option, BACKUP_ENCRYPTION_KEY is not read."""
    (v,) = [v for v in VALID if v["file"] == "hex-key.sql.enc"]
    wrong = secret_file(tmp_path, "wrong", OTHER_KEY.encode())
    status, out, _ = run(
        ["open", "--legacy", "--key-file", wrong, vector_path(v)], env={"BACKUP_ENCRYPTION_KEY": v["setting"]}
    )
    assert (status, out) == (77, b"")


def test_every_environment_key_is_tried():
    (v,) = [v for v in VALID if v["file"] == "passphrase.sql.enc"]
    env = {"ENCPIPE_KEY": OTHER_KEY, "ENCPIPE_PASSPHRASE": "nope", "BACKUP_ENCRYPTION_KEY": v["setting"]}
    status, out, err = run(["open", "--legacy", vector_path(v)], env=env)
    assert (status, err) == (0, "")
    assert_plaintext(v, out)
    env["BACKUP_ENCRYPTION_KEY"] = "also nope"
    env["ENCPIPE_PASSPHRASE"] = v["setting"]
    status, out, err = run(["open", "--legacy", vector_path(v)], env=env)
    assert (status, err) == (0, "")
    assert_plaintext(v, out)


def test_x25519_identity_alone_cannot_open_a_legacy_file(tmp_path):
    identity = str(tmp_path / "id")
    assert run(["keygen", "--x25519", "-o", identity])[0] == 0
    status, out, err = run(["open", "--legacy", "--identity", identity, vector_path(VALID[0])])
    assert (status, out) == (78, b"")
    assert_one_error(err, "x25519")


def test_load_keys_deduplicates_and_puts_the_old_setting_first():
    loader = KeyLoader(env={"ENCPIPE_KEY": "ab" * 32}, warn=None)
    keys = legacy.load_keys(loader, KeySources(), {"ENCPIPE_KEY": "ab" * 32, "BACKUP_ENCRYPTION_KEY": "ab" * 32})
    assert [k.label for k in keys] == ["BACKUP_ENCRYPTION_KEY (hex key)"]
    with pytest.raises(NoKeyConfigured):
        legacy.load_keys(KeyLoader(env={}, warn=None), KeySources(), {})


def test_secret_on_stdin_and_data_on_stdin_is_refused():
    status, out, err = run(["open", "--legacy", "--passphrase-fd", "0"], stdin=vector_bytes(VALID[0]))
    assert (status, out) == (64, b"")


# --- the library function ----------------------------------------------------


class Recorder:
    def __init__(self):
        self.writes = []

    def write(self, data):
        self.writes.append(bytes(data))
        return len(data)

    def flush(self):
        pass


@pytest.mark.parametrize("seekable", [True, False])
def test_open_legacy_writes_nothing_when_the_tag_fails(seekable):
    (v,) = [v for v in INVALID if v["file"] == "tampered-last-byte.sql.enc"]
    src = io.BytesIO(vector_bytes(v)) if seekable else Pipe(vector_bytes(v))
    dst = Recorder()
    with pytest.raises(NoMatchingKey):
        legacy.open_legacy(src, dst, [legacy.key_from_setting(v["setting"])])
    assert dst.writes == []


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, legacy.BUFFER_SIZE - 1, legacy.BUFFER_SIZE,
                                    legacy.BUFFER_SIZE + 1, 2 * legacy.BUFFER_SIZE + 100])
def test_round_trip_across_buffer_boundaries(length):
    key = legacy.key_from_setting("passphrase")
    plaintext = os.urandom(length)
    sealed = io.BytesIO()
    assert legacy.seal_legacy(io.BytesIO(plaintext), sealed, key.key) == length
    assert len(sealed.getvalue()) == 64 + length
    for src in (io.BytesIO(sealed.getvalue()), Pipe(sealed.getvalue())):
        out = io.BytesIO()
        info = legacy.open_legacy(src, out, [legacy.key_from_setting("wrong"), key])
        assert out.getvalue() == plaintext
        assert info == legacy.LegacyInfo(length, "BACKUP_ENCRYPTION_KEY (passphrase)", spooled=True)


DUMP = b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n" + b"-- filler\n" * 200_000
EVIL = b"\\! id > /tmp/pwned\n"


class RewrittenAfterFirstRead(io.FileIO):
    """A legacy file that an attacker rewrites as soon as encpipe has read past its
    first bytes: GCM is malleable, so XOR-ing known plaintext turns the dump's
    start into a shell command."""

    def __init__(self, path):
        super().__init__(path, "rb")
        self.path, self.flipped = path, False

    def readinto(self, buffer):
        n = super().readinto(buffer)
        if not self.flipped and self.tell() > 64 + len(EVIL):
            flip = bytes(a ^ b for a, b in zip(DUMP, EVIL))
            with open(self.path, "r+b") as f:
                f.seek(64)
                old = f.read(len(flip))
                f.seek(64)
                f.write(bytes(a ^ b for a, b in zip(old, flip)))
            self.flipped = True
        return n


@pytest.mark.parametrize("mode", ["stdin", "library"])
def test_a_file_rewritten_while_it_is_read_never_yields_the_rewritten_bytes(tmp_path, mode):
    """The file changes once the authenticating pass has read past the block: the
    output is the genuine dump (decrypted from the copy that authenticated), never
    the flipped bytes, and the file itself no longer authenticates."""
    key = legacy.key_from_setting("k")
    path = tmp_path / "shop.sql.enc"
    with open(path, "wb") as f:
        legacy.seal_legacy(io.BytesIO(DUMP), f, key.key)
    src = RewrittenAfterFirstRead(str(path))
    if mode == "stdin":
        out, err = io.BytesIO(), io.StringIO()
        status = cli.main(["open", "--legacy"], stdin=src, stdout=out, stderr=err,
                          env={"BACKUP_ENCRYPTION_KEY": "k"})
        output = out.getvalue()
    else:
        out = io.BytesIO()
        legacy.open_legacy(src, out, [key])
        status, output = 0, out.getvalue()
    assert src.flipped
    assert EVIL not in output
    assert output in (b"", DUMP)
    assert status == 0 and output == DUMP
    rerun, _, _ = run(["open", "--legacy", str(path)], env={"BACKUP_ENCRYPTION_KEY": "k"})
    assert rerun == 77


def test_spool_goes_to_tmpdir_and_leaves_nothing(tmp_path):
    (v,) = [v for v in VALID if v["file"] == "medium-hex-key.sql.enc"]
    out = io.BytesIO()
    info = legacy.open_legacy(Pipe(vector_bytes(v)), out, [legacy.key_from_setting(v["setting"])], tmpdir=tmp_path)
    assert info.spooled
    assert_plaintext(v, out.getvalue())
    assert list(tmp_path.iterdir()) == []


# --- inspect -----------------------------------------------------------------


def test_inspect_legacy_without_key_reports_sizes():
    (v,) = [v for v in VALID if v["file"] == "medium-hex-key.sql.enc"]
    for stdin, argv in ((b"", [vector_path(v)]), (Pipe(vector_bytes(v)), [])):
        status, out, err = run(["inspect", "--legacy", "--json", *argv], stdin=stdin)
        assert (status, err) == (0, "")
        assert json.loads(out) == {
            "format": "legacy",
            "suite": legacy.SUITE,
            "header_bytes": 64,
            "payload_bytes": 100000,
            "plaintext_bytes": 100000,
            "verified": False,
            "checked": "header and length only: not verified (use --verify with a key to authenticate the file)",
        }


@pytest.mark.parametrize("via", ["file", "pipe"])
def test_inspect_legacy_verify(via):
    (v,) = [v for v in VALID if v["file"] == "passphrase.sql.enc"]
    argv = ["inspect", "--legacy", "--verify", "--json"]
    stdin = b""
    if via == "file":
        argv.append(vector_path(v))
    else:
        stdin = Pipe(vector_bytes(v))
    status, out, err = run(argv, stdin=stdin, env={"BACKUP_ENCRYPTION_KEY": v["setting"]})
    assert (status, err) == (0, "")
    report = json.loads(out)
    assert report["verified"] is True
    assert report["plaintext_bytes"] == v["plaintext_bytes"]
    assert report["key"] == "BACKUP_ENCRYPTION_KEY (passphrase)"
    # a legacy file has no chunks: one GCM tag over the whole payload, checked before the report
    assert report["checked"] == "the whole file (one tag): verified"


@pytest.mark.parametrize("v", INVALID, ids=ids(INVALID))
def test_inspect_legacy_verify_fails_on_invalid_vectors(v):
    status, out, err = run(
        ["inspect", "--legacy", "--verify", vector_path(v)], env={"BACKUP_ENCRYPTION_KEY": v["setting"]}
    )
    assert (status, out) == (EXIT_FOR[v["expect"]], b"")
    assert_one_error(err)


def test_inspect_hints_at_legacy_for_a_file_of_the_old_size():
    (v,) = [v for v in VALID if v["file"] == "empty-hex-key.sql.enc"]  # exactly 64 bytes
    status, out, err = run(["inspect", vector_path(v)], stdin=b"")
    assert (status, out) == (65, b"")
    assert err == (
        "encpipe: error: not an encpipe file\n"
        "encpipe: hint: if it is a backup from the previous tool (64 bytes), try: encpipe inspect --legacy --verify\n"
    )


def test_no_legacy_hint_on_a_pipe_which_would_have_to_be_read_to_its_end():
    (v,) = [v for v in VALID if v["file"] == "empty-hex-key.sql.enc"]
    status, out, err = run(["inspect"], stdin=Pipe(vector_bytes(v)))
    assert (status, out, err) == (65, b"", "encpipe: error: not an encpipe file\n")


@pytest.mark.parametrize("via", ["file", "pipe"])
def test_inspect_gives_no_legacy_hint_for_a_short_file(via, tmp_path):
    path = tmp_path / "short"
    path.write_bytes(b"-- not encrypted at all, and short\n"[:63].ljust(63, b"."))
    argv, stdin = (["inspect", str(path)], b"") if via == "file" else (["inspect"], Pipe(path.read_bytes()))
    status, out, err = run(argv, stdin=stdin)
    assert (status, out, err) == (65, b"", "encpipe: error: not an encpipe file\n")


def test_legacy_on_an_encpipe_file_says_so(tmp_path):
    sealed = tmp_path / "new.sql.enc"
    status, _, _ = run(["seal", "-o", str(sealed)], stdin=b"data", env={"ENCPIPE_KEY": OTHER_KEY})
    assert status == 0
    for command in ("open", "inspect"):
        status, out, err = run([command, "--legacy", str(sealed)], env={"ENCPIPE_KEY": OTHER_KEY})
        assert (status, out) == (65, b"")
        assert err == (
            "encpipe: error: this is an encpipe file, not one from the previous tool\n"
            "encpipe: hint: open it without --legacy\n"
        )


# --- acceptance 3: constant memory ------------------------------------------

_PEAK = r"""
import resource, subprocess, sys
path, via = sys.argv[1], sys.argv[2]
command = [sys.executable, "-m", "encpipe"] + sys.argv[3:]
with open("/dev/null", "wb") as sink:
    if via == "file":
        status = subprocess.run(command + [path], stdout=sink).returncode
    else:
        cat = subprocess.Popen(["cat", path], stdout=subprocess.PIPE)
        status = subprocess.run(command, stdin=cat.stdout, stdout=sink).returncode
        cat.stdout.close()
        cat.wait()
print(status, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


class Zeros:
    def __init__(self, n):
        self.left = n

    def readinto(self, b):
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def peak_rss(path, via, *argv, env=None):
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, path, via, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    status, peak = done.stdout.split()
    return int(status), int(peak)


def test_memory_stays_constant_on_a_64_mib_file(tmp_path):
    size = 64 << 20
    path = str(tmp_path / "big.sql.enc")
    key = legacy.key_from_setting("ab" * 32)
    with open(path, "wb") as f:
        legacy.seal_legacy(Zeros(size), f, key.key)
    env = {"BACKUP_ENCRYPTION_KEY": "ab" * 32, "TMPDIR": str(tmp_path)}
    _, baseline = peak_rss(os.devnull, "pipe", "--version")
    for via in ("file", "pipe"):
        status, peak = peak_rss(path, via, "open", "--legacy", env=env)
        assert status == 0
        assert peak < size // 2, (via, peak)
        assert peak - baseline < 16 << 20, (via, peak, baseline)
