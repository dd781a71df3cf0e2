"""Two secrets cannot both come from standard input: `--passphrase-fd 0` beside a
file given as `-`, /dev/stdin, /dev/fd/0 or /proc/self/fd/0 (or two such files),
whatever they hold (keys, passphrases, signing keys, the keys rewrap adds, verify
keys), is refused with 64, one line, nothing on stdout, before anything is read;
by encpipe, encpipe-restore, encpipe-backup and encpipe-verify (README "Where keys
come from")."""

import os
import subprocess

import pytest

from fuzz.craft import clean_env, command

KEY = "3e" * 32
WAIT = 30
STDIN_PATHS = ["-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"]
SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
RESTORE = os.path.join(SCRIPTS, "encpipe-restore")
BACKUP = os.path.join(SCRIPTS, "encpipe-backup")


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    path = tmp_path_factory.mktemp("stdin") / "x.enc"
    done = subprocess.run(command("seal", "-o", str(path)), input=b"plaintext", env=clean_env({"ENCPIPE_KEY": KEY}),
                          capture_output=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    return str(path)


def _stdin(kind, tmp_path):
    """Standard input holding the key: a pipe (the first reader takes it all), or a
    regular file (which /dev/stdin reopens from its start: each reader got it all)."""
    if kind == "pipe":
        return {"input": KEY.encode() + b"\n"}
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    return {"stdin": open(path, "rb")}


@pytest.mark.parametrize("kind", ["pipe", "file"])
@pytest.mark.parametrize("path", STDIN_PATHS)
def test_passphrase_fd_0_and_a_key_file_on_stdin(tmp_path, sealed, path, kind):
    given = _stdin(kind, tmp_path)
    try:
        done = subprocess.run(command("open", sealed, "--passphrase-fd", "0", "--key-file", path),
                              capture_output=True, env=clean_env(), timeout=WAIT, **given)
    finally:
        if "stdin" in given:
            given["stdin"].close()
    assert (done.returncode, done.stdout) == (64, b"")
    assert done.stderr == (b"encpipe: error: standard input is given to --passphrase-fd 0 and to --key-file: "
                           b"give each secret its own\n")


def test_two_key_files_on_stdin(tmp_path, sealed):
    done = subprocess.run(command("open", sealed, "--key-file", "-", "--identity", "/dev/stdin"),
                          input=KEY.encode() + b"\n", capture_output=True, env=clean_env(), timeout=WAIT)
    assert (done.returncode, done.stdout) == (64, b"")
    assert done.stderr == (b"encpipe: error: standard input is given to --key-file and to --identity: "
                           b"give each secret its own\n")


def test_a_key_file_named_by_its_path_that_is_standard_input_too(tmp_path, sealed):
    """Not only `-` and /dev/stdin: a path naming the very file standard input is
    (`--key-file KEY < KEY`) is standard input, refused beside --passphrase-fd 0."""
    key = tmp_path / "key"
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    with open(key, "rb") as stdin:
        done = subprocess.run(command("open", sealed, "--passphrase-fd", "0", "--key-file", str(key)), stdin=stdin,
                              capture_output=True, env=clean_env(), timeout=WAIT)
    assert (done.returncode, done.stdout) == (64, b"")
    assert done.stderr == (b"encpipe: error: standard input is given to --passphrase-fd 0 and to --key-file: "
                           b"give each secret its own\n")

def test_one_secret_on_stdin_still_opens(sealed):
    for args in (["--key-file", "/dev/stdin"], ["--key-file", "-"]):
        done = subprocess.run(command("open", sealed, *args), input=KEY.encode() + b"\n", capture_output=True,
                              env=clean_env(), timeout=WAIT)
        assert (done.returncode, done.stdout, done.stderr) == (0, b"plaintext", b"")


@pytest.mark.parametrize("path", ["-", "/dev/stdin", "/dev/fd/0"])
def test_restore_refuses_passphrase_fd_0_and_a_key_file_on_stdin(tmp_path, path):
    """Before any key is read, any server reached or FILE looked at."""
    done = subprocess.run([RESTORE, "--passphrase-fd", "0", "--key-file", path,
                           str(tmp_path / "db_20260101T000000Z.sql.enc"), "db"],
                          input=KEY.encode() + b"\n", capture_output=True, env=clean_env(), timeout=WAIT)
    assert (done.returncode, done.stdout) == (64, b"")
    assert done.stderr == (b"encpipe-restore: error: file descriptor 0 is given to --passphrase-fd and to "
                           b"--key-file: give each secret its own\n")


@pytest.mark.parametrize("path", ["-", "/dev/stdin", "/dev/fd/0"])
def test_backup_refuses_passphrase_fd_0_and_a_key_file_on_stdin(tmp_path, path):
    """Before the passphrase is read or DIR made (once read, descriptor 0 was closed,
    and the key file read the backup directory that took its number)."""
    directory = tmp_path / "b"
    done = subprocess.run([BACKUP, "--dir", str(directory), "--passphrase-fd", "0", "--key-file", path, "db"],
                          input=KEY.encode() + b"\n", capture_output=True, timeout=WAIT,
                          env=clean_env({"PGHOST": str(tmp_path / "no-server")}))
    assert (done.returncode, done.stdout) == (64, b"")
    assert done.stderr == (b"encpipe-backup: error: standard input is given to --passphrase-fd 0 and to "
                           b"--key-file: give each secret its own\n")
    assert not directory.exists()


VERIFY = os.path.join(SCRIPTS, "encpipe-verify")
# Pairs of options, of one command, that would both read standard input: each names the
# other in the refusal, whatever the kind of secret (keys, passphrases, signing keys,
# the keys rewrap adds, verify keys).
REWRAP_PAIRS = [
    (["--key-file", "/dev/stdin"], ["--add-key-file", "/dev/stdin"], "--key-file", "--add-key-file"),
    (["--key-file", "-"], ["--add-passphrase-file", "/dev/fd/0"], "--key-file", "--add-passphrase-file"),
    (["--passphrase-fd", "0"], ["--add-key-file", "/proc/self/fd/0"], "--passphrase-fd 0", "--add-key-file"),
    (["--identity", "/dev/stdin"], ["--sign-key", "-"], "--identity", "--sign-key"),
    (["--passphrase-file", "/dev/stdin"], ["--signer-file", "/dev/stdin"], "--passphrase-file", "--signer-file"),
    (["--add-key-file", "-"], ["--add-passphrase-file", "-"], "--add-key-file", "--add-passphrase-file"),
]


def _run_keeping_stdin(argv, **kwargs):
    """`argv` with standard input a pipe holding a key; (result, what it left unread)."""
    read_end, write_end = os.pipe()
    os.write(write_end, KEY.encode() + b"\n")
    os.close(write_end)
    try:
        done = subprocess.run(argv, stdin=read_end, capture_output=True, timeout=WAIT, **kwargs)
        os.set_blocking(read_end, False)
        try:
            left = os.read(read_end, 4096)
        except BlockingIOError:
            left = b""
    finally:
        os.close(read_end)
    return done, left


@pytest.mark.parametrize("first, second, first_name, second_name", REWRAP_PAIRS)
def test_rewrap_in_place_refuses_two_secrets_on_stdin_before_reading_any(tmp_path, sealed, first, second,
                                                                          first_name, second_name):
    target = tmp_path / "x.enc"
    target.write_bytes(open(sealed, "rb").read())
    before = target.read_bytes()
    done, left = _run_keeping_stdin(command("rewrap", "--in-place", str(target), *first, *second), env=clean_env())
    assert (done.returncode, done.stdout, left) == (64, b"", KEY.encode() + b"\n")
    assert done.stderr == (f"encpipe: error: standard input is given to {first_name} and to {second_name}: "
                           "give each secret its own\n").encode()
    assert target.read_bytes() == before


def test_keyid_refuses_a_key_and_a_signing_key_both_on_stdin():
    done, left = _run_keeping_stdin(command("keyid", "--key-file", "-", "--sign-key", "/dev/stdin"), env=clean_env())
    assert (done.returncode, done.stdout, left) == (64, b"", KEY.encode() + b"\n")
    assert done.stderr == (b"encpipe: error: standard input is given to --key-file and to --sign-key: "
                           b"give each secret its own\n")


def test_verify_refuses_a_key_and_a_signer_file_both_on_stdin(tmp_path, sealed):
    directory = tmp_path / "b"
    directory.mkdir(mode=0o700)
    (directory / "db_20260101T000000Z.sql.enc").write_bytes(open(sealed, "rb").read())
    done, left = _run_keeping_stdin([VERIFY, "--key-file", "/dev/stdin", "--signer-file", "-", str(directory)],
                                    env=clean_env())
    assert (done.returncode, done.stdout, left) == (64, b"", KEY.encode() + b"\n")
    assert done.stderr == (b"encpipe-verify: error: standard input is given to --key-file and to --signer-file: "
                           b"give each secret its own\n")


def test_backup_refuses_a_key_and_a_signing_key_both_on_stdin(tmp_path):
    directory = tmp_path / "b"
    done, left = _run_keeping_stdin([BACKUP, "--dir", str(directory), "--key-file", "-", "--sign-key", "/dev/stdin",
                                     "db"], env=clean_env({"PGHOST": str(tmp_path / "no-server")}))
    assert (done.returncode, done.stdout, left) == (64, b"", KEY.encode() + b"\n")
    assert done.stderr == (b"encpipe-backup: error: standard input is given to --key-file and to --sign-key: "
                           b"give each secret its own\n")
    assert not directory.exists()


# --- scripts that run encpipe once per file: no secret file on standard input ---------------------

MIGRATE = os.path.join(SCRIPTS, "encpipe-migrate")
ROTATE = os.path.join(SCRIPTS, "encpipe-rotate")
ONCE_PER_FILE = [  # (script, its argv before the secret's option, the option)
    ("encpipe-migrate", [MIGRATE, "--legacy-key-file", "LEGACY"], "--key-file"),
    ("encpipe-migrate", [MIGRATE, "--key-file", "NEW"], "--legacy-key-file"),
    ("encpipe-rotate", [ROTATE, "--old-key-file", "LEGACY"], "--new-key-file"),
    ("encpipe-rotate", [ROTATE, "--new-key-file", "NEW"], "--old-key-file"),
    ("encpipe-restore", [RESTORE], "--key-file"),
    ("encpipe-restore", [RESTORE], "--passphrase-file"),
]


@pytest.mark.parametrize("path", STDIN_PATHS)
@pytest.mark.parametrize("prog, before, option", ONCE_PER_FILE)
def test_a_script_that_runs_encpipe_per_file_refuses_a_secret_file_on_stdin_at_once(tmp_path, sealed, prog,
                                                                                      before, option, path):
    """Each encpipe it runs would read standard input again (a pipe: empty after the
    first; migrate's seal: the plaintext): 64 and a hint at /dev/fd/N, before
    anything is read, any file touched or any server reached."""
    directory = tmp_path / "d"
    directory.mkdir(mode=0o700)
    (directory / "db_20260101T000000Z.sql.enc").write_bytes(open(sealed, "rb").read())
    for name in ("LEGACY", "NEW"):
        (tmp_path / name).write_text(KEY + "\n")
    listing = sorted(os.listdir(directory))
    argv = [str(tmp_path / a) if a in ("LEGACY", "NEW") else a for a in before] + [option, path]
    restore = prog == "encpipe-restore"
    argv += [str(directory / "db_20260101T000000Z.sql.enc"), "db"] if restore else [str(directory)]
    done, left = _run_keeping_stdin(argv, env=clean_env({"PGHOST": str(tmp_path / "no-server")}))
    assert (done.returncode, done.stdout, left) == (64, b"", KEY.encode() + b"\n")
    assert done.stderr == (f"{prog}: error: {option} {path}: a secret on standard input cannot be lent to each "
                           f"encpipe this runs\n{prog}: hint: give the secret on another descriptor, read once and "
                           f"lent to each: {option} /dev/fd/3 3<FILE\n").encode()
    assert sorted(os.listdir(directory)) == listing
