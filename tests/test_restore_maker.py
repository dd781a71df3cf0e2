"""A restore runs the dump's SQL as a superuser, so it takes only a backup whose maker
is authenticated, by the rule retention uses: `encpipe open --refuse-unauthenticated`
refuses (67, nothing on stdout) a file anyone with its public key (x25519 only, no
trusted signer) or any slot holder (format v1) could have made, and encpipe-restore
gives that option to every `encpipe open` it runs unless --allow-unauthenticated."""

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cliutil import assert_one_line_error, ok, run, run_process, secret_file
from test_backup_restore import backup, dump, ensure_small, leftover_databases, python_env, read_key, restore
from test_provenance import forge, identity
from test_vectors import VECTORS, key_args, load

from encpipe import envelope
from encpipe.slots import RawKey

REFUSE = "--refuse-unauthenticated"
NOT_AUTHENTICATED = b"its maker is not authenticated"
DATA = os.urandom(3 * 16384 + 777)


class Keys:
    """A raw key K, an escrow identity X (public X_pub), a signing key S (verify key V)."""

    def __init__(self, directory):
        self.K = secret_file(directory, "k.key", "5a" * 32 + "\n")
        self.X = str(directory / "x.id")
        self.X_pub = ok(run(["keygen", "--x25519", "-o", self.X])).decode().strip()
        self.S = str(directory / "s.sign")
        self.V = ok(run(["keygen", "--sign", "-o", self.S])).decode().strip()

    def seal(self, *args):
        return ok(run(["seal", "--chunk-size", "16K", *args], DATA))


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return Keys(tmp_path_factory.mktemp("maker"))


def open_both_ways(sealed, tmp_path, *args):
    """`encpipe open ARGS` of `sealed` as a FILE argument and from a pipe: two results."""
    path = tmp_path / "f.enc"
    path.write_bytes(sealed)
    return [run_process(["open", *args, str(path)]), run_process(["open", *args], stdin=sealed)]


def assert_refused(result):
    assert (result.returncode, result.stdout) == (67, b""), result.stderr.decode()
    assert NOT_AUTHENTICATED in result.stderr
    assert_one_line_error(result.stderr)


# --- encpipe open --refuse-unauthenticated -------------------------------------------


def test_open_refuses_a_file_only_an_x25519_identity_opens(keys, tmp_path):
    sealed = keys.seal("--recipient", keys.X_pub)
    for result in open_both_ways(sealed, tmp_path, REFUSE, "--identity", keys.X):
        assert_refused(result)
    # without the option it opens, with the warning that says why
    for result in open_both_ways(sealed, tmp_path, "--identity", keys.X):
        assert result.returncode == 0 and result.stdout == DATA
        assert b"anyone with its public key can make such a file" in result.stderr


def test_open_refuses_the_x25519_vector_of_format_v2(tmp_path):
    fields, data = load(VECTORS / "v2_x25519_unsigned.vec")
    for result in open_both_ways(data, tmp_path, REFUSE, *key_args(tmp_path, fields)):
        assert_refused(result)


def test_open_with_a_trusted_signer_opens_a_signed_file_byte_exact(keys, tmp_path):
    sealed = keys.seal("--recipient", keys.X_pub, "--sign-key", keys.S)
    for result in open_both_ways(sealed, tmp_path, REFUSE, "--identity", keys.X, "--signer", keys.V):
        assert (result.returncode, result.stdout, result.stderr) == (0, DATA, b"")
    # signed, but no signer is trusted: still anyone's file as far as open can tell
    for result in open_both_ways(sealed, tmp_path, REFUSE, "--identity", keys.X):
        assert_refused(result)


@pytest.mark.parametrize("name", ["v2_raw_key_three_chunks.vec", "v2_passphrase.vec"])
def test_open_opens_a_v2_file_a_raw_key_or_passphrase_opens(name, tmp_path):
    fields, data = load(VECTORS / name)
    for result in open_both_ways(data, tmp_path, REFUSE, *key_args(tmp_path, fields)):
        assert result.returncode == 0, result.stderr.decode()
        assert hashlib.sha256(result.stdout).hexdigest() == fields["plaintext sha256"][0]


def test_open_opens_a_raw_key_file_that_has_an_escrow_slot_too(keys, tmp_path):
    sealed = keys.seal("--key-file", keys.K, "--recipient", keys.X_pub)
    for result in open_both_ways(sealed, tmp_path, REFUSE, "--key-file", keys.K, "--identity", keys.X):
        assert (result.returncode, result.stdout, result.stderr) == (0, DATA, b"")


@pytest.mark.parametrize("name", ["raw_key_three_chunks.vec", "x25519.vec", "passphrase.vec"])
def test_open_refuses_a_file_of_format_v1(name, tmp_path):
    fields, data = load(VECTORS / name)
    assert data[7] == 1 and fields["expect"] == ["success"]
    for result in open_both_ways(data, tmp_path, REFUSE, *key_args(tmp_path, fields)):
        assert_refused(result)


def test_open_from_a_pipe_writes_nothing_of_a_raw_key_file_forged_by_the_escrow_holder(keys):
    """Without the option, from a pipe, the forgery is found at its end, after the
    chunks the forger made under the file key; with it, before any output."""
    sealed = keys.seal("--key-file", keys.K, "--recipient", keys.X_pub)
    forged = forge(sealed, identity(keys.X), payload=os.urandom(3 * 16384 + 5))
    streamed = run_process(["open", "--key-file", keys.K], stdin=forged)
    assert streamed.returncode == 65 and len(streamed.stdout) >= 16384
    refused = run_process(["open", REFUSE, "--key-file", keys.K], stdin=forged)
    assert (refused.returncode, refused.stdout) == (65, b""), refused.stderr.decode()
    assert b"slot authenticator failed" in refused.stderr


def test_open_legacy_counts_a_file_of_the_previous_tool_as_authenticated(tmp_path):
    """As encpipe-verify and retention do: it has one secret, so whoever made it holds the key."""
    legacy = VECTORS / "legacy"
    import json

    vector = next(v for v in json.loads((legacy / "manifest.json").read_text())["vectors"]
                  if v["expect"] == "ok" and v.get("aes_key"))
    env = {"ENCPIPE_KEY": vector["aes_key"]}
    plain = run_process(["open", "--legacy", str(legacy / vector["file"])], env=env)
    assert plain.returncode == 0, plain.stderr.decode()
    refused = run_process(["open", "--legacy", REFUSE, str(legacy / vector["file"])], env=env)
    assert (refused.returncode, refused.stdout) == (0, plain.stdout), refused.stderr.decode()


# --- encpipe-restore --------------------------------------------------------------------


ROLE = "maker_globals_role"


def _roles(pg):
    return set(pg.psql("SELECT rolname FROM pg_roles").split())


@pytest.fixture
def escrow(tmp_path):
    return Keys(tmp_path)


def _changed_after_backup(pg, db):
    """Change the live database after its backup: a restore would show."""
    pg.psql("INSERT INTO t VALUES (100000, 'after the backup')", db=db)
    return dump(pg, db)


def _assert_restore_refused(pg, proc, db, live, roles_before):
    assert (proc.returncode, proc.stdout) == (67, b""), proc.stderr.decode()
    assert NOT_AUTHENTICATED in proc.stderr and b"--allow-unauthenticated" in proc.stderr
    assert b"Traceback" not in proc.stderr
    assert dump(pg, db) == live
    assert leftover_databases(pg) == set()
    assert _roles(pg) == roles_before


def test_restore_refuses_a_backup_only_the_escrow_identity_opens(pg, tools, escrow, tmp_path):
    db = ensure_small(pg, "maker_escrow")
    pg.psql(f"DROP ROLE IF EXISTS {ROLE}; CREATE ROLE {ROLE} NOLOGIN")
    try:
        path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--recipient", escrow.X_pub)
        assert any(name.endswith(".globals.sql.enc") for name in os.listdir(tmp_path / "b"))
        backed_up = dump(pg, db)
        pg.psql(f"DROP ROLE {ROLE}")
        live, roles = _changed_after_backup(pg, db), _roles(pg)
        proc = restore(pg, tools, path, db, "--identity", escrow.X)
        _assert_restore_refused(pg, proc, db, live, roles)
        # the operator who accepts the risk says so: it restores, roles and all, as before
        proc = restore(pg, tools, path, db, "--drop-old", "--allow-unauthenticated", "--identity", escrow.X)
        assert proc.returncode == 0, proc.stderr.decode()
        assert b"anyone with its public key can make such a file" in proc.stderr
        assert dump(pg, db) == backed_up and leftover_databases(pg) == set()
        assert ROLE in _roles(pg)
    finally:
        pg.psql(f"DROP ROLE IF EXISTS {ROLE}")


def test_restore_refuses_such_a_dump_without_a_globals_file(pg, tools, escrow, tmp_path):
    """The dump's own `encpipe open` refuses it too (no globals file went first: --no-globals)."""
    db = ensure_small(pg, "maker_noglobals")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--no-globals", "--recipient", escrow.X_pub)
    live, roles = _changed_after_backup(pg, db), _roles(pg)
    proc = restore(pg, tools, path, db, "--no-globals", "--identity", escrow.X)
    _assert_restore_refused(pg, proc, db, live, roles)
    assert b"cannot decrypt %s (status 67)" % path.encode() in proc.stderr


def test_restore_of_a_signed_backup_with_the_escrow_identity_and_its_signer(pg, tools, escrow, tmp_path):
    db = ensure_small(pg, "maker_signed")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--recipient", escrow.X_pub, "--sign-key", escrow.S)
    backed_up = dump(pg, db)
    live, roles = _changed_after_backup(pg, db), _roles(pg)
    _assert_restore_refused(pg, restore(pg, tools, path, db, "--identity", escrow.X), db, live, roles)
    proc = restore(pg, tools, path, db, "--drop-old", "--identity", escrow.X, "--signer", escrow.V)
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, db) == backed_up and leftover_databases(pg) == set()


def test_restore_of_a_raw_key_backup_as_before(pg, tools, key_file, escrow, tmp_path):
    db = ensure_small(pg, "maker_raw")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file, "--recipient", escrow.X_pub)
    backed_up = dump(pg, db)
    _changed_after_backup(pg, db)
    proc = restore(pg, tools, path, db, "--drop-old", "--key-file", key_file)
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, db) == backed_up and leftover_databases(pg) == set()


def test_restore_refuses_a_backup_of_format_v1(pg, tools, key_file, tmp_path):
    """Any slot holder of a v1 file could have made it; the same run's files, as v1."""
    db = ensure_small(pg, "maker_v1")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    backed_up = dump(pg, db)
    key = RawKey(bytes.fromhex(read_key(key_file)))
    for sealed in Path(path).parent.glob("*.enc"):  # not the cluster marker
        plain = subprocess.run([sys.executable, "-m", "encpipe", "open", "--key-file", key_file, str(sealed)],
                               check=True, capture_output=True, env=python_env()).stdout
        out = io.BytesIO()
        envelope.seal(io.BytesIO(plain), out, [key], version=1)
        sealed.write_bytes(out.getvalue())
    live, roles = _changed_after_backup(pg, db), _roles(pg)
    _assert_restore_refused(pg, restore(pg, tools, path, db, "--key-file", key_file), db, live, roles)
    proc = restore(pg, tools, path, db, "--drop-old", "--allow-unauthenticated", "--key-file", key_file)
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, db) == backed_up and leftover_databases(pg) == set()


def test_restore_refuses_a_globals_file_only_the_escrow_identity_opens(pg, tools, key_file, escrow, tmp_path):
    """The dump is the raw key's; its globals file (role SQL, run as a superuser), made
    anew by someone with the public key, is refused before any role is created."""
    db = ensure_small(pg, "maker_globals")
    pg.psql(f"DROP ROLE IF EXISTS {ROLE}; CREATE ROLE {ROLE} NOLOGIN")
    try:
        path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file, "--recipient", escrow.X_pub)
        pg.psql(f"DROP ROLE {ROLE}")
        globals_file = next((tmp_path / "b").glob("*.globals.sql.enc"))
        plain = subprocess.run([sys.executable, "-m", "encpipe", "open", "--key-file", key_file, str(globals_file)],
                               check=True, capture_output=True, env=python_env()).stdout
        assert ROLE.encode() in plain
        globals_file.write_bytes(ok(run(["seal", "--recipient", escrow.X_pub], plain)))
        live, roles = _changed_after_backup(pg, db), _roles(pg)
        proc = restore(pg, tools, path, db, "--key-file", key_file, "--identity", escrow.X)
        _assert_restore_refused(pg, proc, db, live, roles)
        assert b"cannot decrypt the globals file" in proc.stderr
    finally:
        pg.psql(f"DROP ROLE IF EXISTS {ROLE}")


def test_a_dump_that_fails_to_authenticate_creates_no_role_not_even_for_a_moment(pg, tools, key_file, tmp_path):
    """The globals file authenticates, the dump does not (damaged): its roles are created only
    once the dump has authenticated, so none is created (and dropped again) here."""
    db = ensure_small(pg, "maker_late_roles")
    pg.psql(f"DROP ROLE IF EXISTS {ROLE}; CREATE ROLE {ROLE} NOLOGIN")
    try:
        path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
        pg.psql(f"DROP ROLE {ROLE}")
        sealed = bytearray(Path(path).read_bytes())
        sealed[len(sealed) // 2] ^= 1
        Path(path).write_bytes(bytes(sealed))
        live, roles = _changed_after_backup(pg, db), _roles(pg)
        proc = restore(pg, tools, path, db, "--key-file", key_file)
        assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr.decode()
        assert b"created roles" not in proc.stderr and b"dropped the roles" not in proc.stderr
        assert dump(pg, db) == live and leftover_databases(pg) == set() and _roles(pg) == roles
        # the same backup undamaged still brings the role the database needs
        Path(path).write_bytes(bytes(sealed[: len(sealed) // 2]) + bytes([sealed[len(sealed) // 2] ^ 1])
                               + bytes(sealed[len(sealed) // 2 + 1:]))
        proc = restore(pg, tools, path, db, "--drop-old", "--key-file", key_file)
        assert proc.returncode == 0, proc.stderr.decode()
        assert b"created roles: " in proc.stderr and ROLE in _roles(pg)
    finally:
        pg.psql(f"DROP ROLE IF EXISTS {ROLE}")
