"""The two cipher libraries: the same bytes, chosen by ENCPIPE_CIPHER, named by
--version, and imported only by the commands that need a cipher.

The format tests (vectors, tampering, threads, round trips, rewrap, x25519,
limits) run under each library: the suite itself runs them under its default
(`cryptography`: CI installs both, the test extra includes it), and once more
in a child pytest with ENCPIPE_CIPHER set under each library the run itself does
not use (all of them when the run did not collect every format test), so
neither is skipped.
"""

import os
import subprocess
import sys

import pytest

from encpipe import aead
from encpipe.format import TAG_LEN
from encpipe.stream import chunk_nonce

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LIBRARIES = (aead.CRYPTOGRAPHY, aead.PYCRYPTODOME)
KEY = bytes(range(32))
RAW_KEY_HEX = "5d" * 32
FORMAT_TESTS = ["test_vectors.py", "test_tamper.py", "test_threads.py", "test_roundtrip.py", "test_rewrap.py",
                "test_x25519.py", "test_limits.py"]
# Left out of the child run: what only scrypt decides, which is pycryptodome's under either library
# (slots.scrypt_kek): the same work in the run that chose the other library (about 11 of its 45 s).
SCRYPT_ONLY = "not scrypt_budget and not passphrase_slot_at_the_limits"
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_")}, "PYTHONPATH": ROOT}


def _cipher(monkeypatch, library):
    monkeypatch.setenv(aead.ENV_CIPHER, library)
    assert aead.library() == library
    return aead.gcm(KEY)


def _sealed(monkeypatch, library, data, counter, last):
    buf = memoryview(bytearray(len(data) + TAG_LEN))
    buf[: len(data)] = data
    _cipher(monkeypatch, library).seal(chunk_nonce(counter, last), buf, len(data))
    return bytes(buf)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000, 65536 + 3])
@pytest.mark.parametrize("last", [False, True])
def test_both_libraries_seal_the_same_bytes_and_open_each_others(monkeypatch, size, last):
    data = os.urandom(size)
    sealed = {lib: _sealed(monkeypatch, lib, data, 7, last) for lib in LIBRARIES}
    assert sealed[aead.CRYPTOGRAPHY] == sealed[aead.PYCRYPTODOME]
    for lib in LIBRARIES:
        buf = memoryview(bytearray(sealed[aead.PYCRYPTODOME]))
        assert _cipher(monkeypatch, lib).open(chunk_nonce(7, last), buf, len(buf))
        assert bytes(buf[:size]) == data


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("damage", ["flag", "counter", "body", "tag"])
def test_a_chunk_that_fails_is_left_as_it_was(monkeypatch, library, damage):
    # open tries the other last-chunk flag on failure, to name the failure: it
    # needs the ciphertext back, whatever the library did to the buffer.
    sealed = bytearray(_sealed(monkeypatch, aead.PYCRYPTODOME, os.urandom(4096), 3, False))
    nonce = {"flag": chunk_nonce(3, True), "counter": chunk_nonce(4, False)}.get(damage, chunk_nonce(3, False))
    if damage in ("body", "tag"):
        sealed[100 if damage == "body" else -1] ^= 1
    buf = memoryview(bytearray(sealed))
    assert not _cipher(monkeypatch, library).open(nonce, buf, len(buf))
    assert bytes(buf) == bytes(sealed)


def test_both_libraries_wrap_keys_alike(monkeypatch):
    kek, file_key = os.urandom(32), os.urandom(32)
    wrapped = set()
    for lib in LIBRARIES:
        monkeypatch.setenv(aead.ENV_CIPHER, lib)
        wrapped.add(aead.wrap_key(kek, file_key))
        assert aead.unwrap_key(kek, aead.wrap_key(kek, file_key)) == file_key
        assert aead.unwrap_key(os.urandom(32), aead.wrap_key(kek, file_key)) is None
    assert len(wrapped) == 1


def test_without_the_variable_cryptography_is_chosen_when_installed(monkeypatch):
    monkeypatch.delenv(aead.ENV_CIPHER, raising=False)
    assert aead.name() == aead.CRYPTOGRAPHY == aead.library()


def _encpipe(args, env_extra=None, stdin=b"", prelude=""):
    code = prelude + "import sys; from encpipe.cli import run; sys.argv[0] = 'encpipe'; run()"
    return subprocess.run([sys.executable, "-c", code, *args], input=stdin, capture_output=True,
                          env={**ENV, **(env_extra or {})}, timeout=60)


@pytest.mark.parametrize("library", LIBRARIES)
def test_version_names_the_cipher_library(library):
    proc = _encpipe(["--version"], {aead.ENV_CIPHER: library})
    assert proc.returncode == 0
    assert proc.stdout.decode().strip().endswith(f"(cipher: {library})")


def test_an_unknown_library_is_a_usage_error_before_any_output():
    proc = _encpipe(["seal"], {aead.ENV_CIPHER: "openssl", "ENCPIPE_KEY": RAW_KEY_HEX}, stdin=b"data")
    assert (proc.returncode, proc.stdout) == (64, b"")
    assert proc.stderr.decode() == (
        "encpipe: error: ENCPIPE_CIPHER must be cryptography or pycryptodome, not 'openssl'\n")


NO_CRYPTOGRAPHY = "import sys; sys.modules['cryptography'] = None\n"


def test_forcing_a_library_that_cannot_be_imported_is_an_error_before_any_output():
    env = {aead.ENV_CIPHER: "cryptography", "ENCPIPE_KEY": RAW_KEY_HEX}
    proc = _encpipe(["seal"], env, stdin=b"data", prelude=NO_CRYPTOGRAPHY)
    assert (proc.returncode, proc.stdout) == (64, b"")
    lines = proc.stderr.decode().splitlines()
    assert lines[0].startswith("encpipe: error: ENCPIPE_CIPHER=cryptography, but it cannot be imported")
    assert lines[1] == "encpipe: hint: pip install 'encpipe[fast]' for cryptography, or unset ENCPIPE_CIPHER"


def test_without_cryptography_pycryptodome_is_used():
    env = {"ENCPIPE_KEY": RAW_KEY_HEX}
    assert _encpipe(["--version"], env, prelude=NO_CRYPTOGRAPHY).stdout.decode().endswith("(cipher: pycryptodome)\n")
    sealed = _encpipe(["seal"], env, stdin=b"data", prelude=NO_CRYPTOGRAPHY)
    assert sealed.returncode == 0
    assert _encpipe(["open"], env, stdin=sealed.stdout).stdout == b"data"


def _covered_by_this_run(session, library):
    """Whether this pytest run itself runs the format tests under `library`: it
    collected every format test file (the whole suite, as CI runs it: under
    pytest-xdist each worker collects every test), and `library` is the one in use
    here, which its encpipe children use too (test_the_library_in_use_is_the_one_forced).
    Without ENCPIPE_CIPHER, that is cryptography, which CI's venv has (the test
    and fast extras): test_without_the_variable_cryptography_is_chosen_when_installed."""
    files = {os.path.basename(str(item.path)) for item in session.items}
    return set(FORMAT_TESTS) <= files and aead.library() == library


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.slow
def test_the_format_tests_pass_under_each_library(request, library):
    """Under each library: in this run when it runs them under that library (the
    suite's default, cryptography in CI), else in a child pytest with ENCPIPE_CIPHER
    set (pycryptodome in CI; both when only some tests were collected)."""
    if _covered_by_this_run(request.session, library):
        return
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly", "-p", "no:cacheprovider", "-k", SCRYPT_ONLY,
         *FORMAT_TESTS, "test_aead.py::test_the_library_in_use_is_the_one_forced"],
        cwd=HERE, capture_output=True, text=True, env={**ENV, aead.ENV_CIPHER: library}, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " skipped" not in proc.stdout.splitlines()[-1]


def test_the_library_in_use_is_the_one_forced():
    # Run by the test above, in a child whose ENCPIPE_CIPHER is set.
    forced = os.environ.get(aead.ENV_CIPHER) or aead.name()
    assert aead.library() == forced
    # and in the encpipe processes the format tests start (through these helpers)
    import test_x25519
    from fuzz.craft import clean_env, command

    for env in (clean_env(), test_x25519.clean_env()):
        version = subprocess.run(command("--version"), capture_output=True, env=env, timeout=60).stdout.decode()
        assert version.endswith(f"(cipher: {forced})\n"), version


# --- imports ---------------------------------------------------------------


def _imported(args, library, stdin=b""):
    """Module names imported by `encpipe ARGS`, from python -X importtime."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "encpipe", *args], input=stdin,
                          capture_output=True, env={**ENV, "ENCPIPE_KEY": RAW_KEY_HEX, aead.ENV_CIPHER: library},
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines() if line.startswith("import time:")]
    return set(lines)


def _ciphers(modules):
    """The cipher modules encpipe uses, among `modules`. pubkey may use the library's
    X25519, and `cryptography`'s brings some of its cipher modules, not its AEAD."""
    return {m for m in modules if m.startswith(("Crypto.Cipher", "cryptography.hazmat.primitives.ciphers.aead"))}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("imports")
    sealed = tmp / "sealed"
    sealed.write_bytes(_encpipe(["seal"], {"ENCPIPE_KEY": RAW_KEY_HEX}, stdin=b"x" * 1000).stdout)
    identity = tmp / "identity"
    assert _encpipe(["keygen", "--x25519", "-o", str(identity)]).returncode == 0
    keyfile = tmp / "key"
    keyfile.write_text(RAW_KEY_HEX + "\n")
    return sealed, identity, keyfile


@pytest.mark.parametrize("library", LIBRARIES)
def test_commands_that_need_no_cipher_import_none(files, library):
    sealed, identity, keyfile = files
    for args in (["inspect", str(sealed)], ["inspect", "--json", str(sealed)], ["keyid"],
                 ["keyid", "--key-file", str(keyfile)], ["pubkey", str(identity)], ["--version"], ["--help"],
                 ["keygen"]):
        assert _ciphers(_imported(args, library)) == set(), args


@pytest.mark.parametrize("library", LIBRARIES)
def test_commands_that_load_no_pycryptodome_library_import_no_platform(files, library):
    """require_installed() imports pycryptodome's top module only; processguard's patch
    of platform.architecture (1.3 ms of imports and regular expressions) waits for a
    module of the package, which loads a library and asks it. Before, `import Crypto`
    alone imported platform: inspect, keyid and seal with cryptography paid for it."""
    sealed, _, keyfile = files
    runs = [(["inspect", str(sealed)], b""), (["keyid", "--key-file", str(keyfile)], b"")]
    if library == aead.CRYPTOGRAPHY:
        runs += [(["seal"], b"data"), (["open"], sealed.read_bytes())]
    for args, stdin in runs:
        modules = _imported(args, library, stdin)
        assert "encpipe.keys" in modules and "platform" not in modules, args
    assert "platform" in _imported(["seal"], aead.PYCRYPTODOME, b"data")  # the patch, where the library loads


def test_seal_and_open_import_only_the_library_in_use(files):
    sealed = files[0].read_bytes()
    for args, stdin in ((["seal"], b"data"), (["open"], sealed), (["inspect", "--verify", str(files[0])], b"")):
        assert not any(m.startswith("cryptography") for m in _imported(args, aead.PYCRYPTODOME, stdin)), args
        assert not any(m.startswith("Crypto.Cipher") for m in _imported(args, aead.CRYPTOGRAPHY, stdin)), args
