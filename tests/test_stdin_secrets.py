"""Two secrets cannot both come from standard input: `--passphrase-fd 0` beside a
key file given as `-`, /dev/stdin, /dev/fd/0 or /proc/self/fd/0 (or two such
files) is refused with 64, one line, nothing on stdout, before anything is read;
by encpipe, encpipe-restore and encpipe-backup (README "Where keys come from")."""

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
