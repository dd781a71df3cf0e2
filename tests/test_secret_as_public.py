"""A secret key pasted where a public key belongs (an X25519 identity as
--recipient or --escrow-recipient, a signing key as --signer) is refused by the
script itself, 64, in one line that does not show it (and a hint), before any child starts:
before, encpipe-rotate and encpipe-migrate put it on the command line of an
`encpipe keyid` child (readable in /proc by every user) to have it refused there,
encpipe-restore put a signing key into each encpipe's environment, and
encpipe-backup made and locked DIR first. encpipe itself says what the value is,
and where the public key comes from."""

import os
import sys

import pytest

import spies
from cliutil import ok, run
from test_backup_restore import BACKUP, RESTORE, python_env
from test_migrate import migrate
from test_rotate import World, rotate, rotate_env

IDENTITY_LINE = "{option}: a secret key (an X25519 identity, not shown), not a public key"
SIGNING_LINE = "--signer: a secret key (a signing key, not shown), not a verify key"
HINTS = {"public key": "give the public key that `encpipe pubkey FILE` prints for the file holding its identity",
         "verify key": "give the verify key that `encpipe pubkey FILE` prints for the file holding its signing key",
         "raw key": "a raw key has no public key: give it in a key file"}


def said(prog, line):
    """The one error line, and its hint."""
    hint = HINTS["verify key" if line.startswith("--signer") else "raw key" if "raw key" in line else "public key"]
    return f"{prog}: error: {line}\n{prog}: hint: {hint}\n"


def secret(path, *keygen):
    ok(run(["keygen", *keygen, "-o", str(path)]))
    [text] = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    return text


@pytest.fixture
def secrets(tmp_path):
    folder = tmp_path / "secrets"
    folder.mkdir()
    return {"identity": secret(folder / "id", "--x25519"), "signing": secret(folder / "sign", "--sign")}


@pytest.fixture
def spy(tmp_path):
    """ENCPIPE: encpipe, each run logged (its argv, its environment)."""
    log = tmp_path / "encpipe.log"
    spies.write(tmp_path / "encpipe-spy", "encpipe", [sys.executable, "-m", "encpipe"], log)
    return str(tmp_path / "encpipe-spy"), log


def assert_refused(status, stdout, stderr, prog, line, log):
    assert (status, stdout, stderr) == (64, type(stdout)(), said(prog, line)), stderr
    assert not log.exists(), spies.records(log)  # no encpipe ran at all: nor with it on its argv


@pytest.mark.parametrize("kind, option", [("identity", "--escrow-recipient"), ("signing", "--signer")])
def test_rotate_refuses_a_secret_key_before_any_child(tmp_path, secrets, spy, kind, option):
    world = World(tmp_path)
    world.add("a.enc", "--key-file", world.old_a)
    done = rotate([option, secrets[kind], *world.args(escrow=False)], env=rotate_env(ENCPIPE=spy[0]))
    line = IDENTITY_LINE.format(option=option) if kind == "identity" else SIGNING_LINE
    assert_refused(done.returncode, done.stdout.decode(), done.stderr.decode(), "encpipe-rotate", line, spy[1])
    assert (world.dir / "a.enc").read_bytes() == world.originals["a.enc"]


@pytest.mark.parametrize("kind, option", [("identity", "--recipient"), ("signing", "--signer")])
def test_migrate_refuses_a_secret_key_before_any_child(tmp_path, keys, secrets, spy, kind, option):
    directory = tmp_path / "backups"
    directory.mkdir()
    status, lines, stderr = migrate(directory, option, secrets[kind], keys=keys, encpipe=spy[0])
    line = IDENTITY_LINE.format(option=option) if kind == "identity" else SIGNING_LINE
    assert_refused(status, lines, stderr, "encpipe-migrate", line, spy[1])


def test_restore_refuses_a_signing_key_as_signer_before_any_child(tmp_path, secrets, spy):
    """It went into ENCPIPE_SIGNER of each encpipe the restore ran."""
    env = {**python_env(), "ENCPIPE": spy[0], "PGHOST": str(tmp_path)}
    (tmp_path / "key").write_text(os.urandom(32).hex() + "\n")
    (tmp_path / "key").chmod(0o600)
    done = run_script([RESTORE, "--key-file", tmp_path / "key", "--signer", secrets["signing"],
                       tmp_path / "f.enc", "db"], env)
    assert_refused(done.returncode, done.stdout, done.stderr.decode(), "encpipe-restore", SIGNING_LINE, spy[1])


@pytest.mark.parametrize("kind, option", [("identity", "--recipient"), ("signing", "--signer")])
def test_backup_refuses_a_secret_key_before_anything(tmp_path, secrets, kind, option):
    directory = tmp_path / "b"
    done = run_script([BACKUP, "--dir", directory, option, secrets[kind], "db"],
                      {**python_env(), "ENCPIPE_PYTHON": sys.executable, "PGHOST": str(tmp_path)})
    line = IDENTITY_LINE.format(option=option) if kind == "identity" else SIGNING_LINE
    assert (done.returncode, done.stdout, done.stderr.decode()) == (64, b"", said("encpipe-backup", line))
    assert not directory.exists()


@pytest.mark.parametrize("kind, args, line", [
    ("identity", ["seal", "--recipient"], IDENTITY_LINE.format(option="--recipient")),
    ("identity", ["keyid", "--recipient"], IDENTITY_LINE.format(option="--recipient")),
    ("signing", ["keyid", "--signer"], SIGNING_LINE),
    ("raw", ["seal", "--recipient"], "--recipient: a raw key (a secret, not shown), not a public key"),
], ids=["seal-identity", "keyid-identity", "keyid-signing-key", "seal-raw-key"])
def test_encpipe_says_a_secret_key_is_one(secrets, kind, args, line):
    value = secrets.get(kind) or os.urandom(32).hex()
    status, out, err = run([*args, value], b"")
    assert (status, out, err) == (64, b"", said("encpipe", line))


def run_script(argv, env):
    import subprocess

    return subprocess.run([str(a) for a in argv], env=env, capture_output=True, timeout=60)


def test_a_secret_key_of_the_other_kind_is_said_so_too(secrets):
    """A signing key where a public key belongs, an identity as --signer."""
    status, out, err = run(["keyid", "--recipient", secrets["signing"]], b"")
    assert (status, out, err) == (64, b"", said("encpipe", "--recipient: a secret key (a signing key, not shown), "
                                                           "not a public key"))
    status, out, err = run(["keyid", "--signer", secrets["identity"]], b"")
    assert (status, out, err) == (64, b"", said("encpipe", "--signer: a secret key (an X25519 identity, not shown), "
                                                           "not a verify key"))
