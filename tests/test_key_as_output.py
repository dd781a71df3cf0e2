"""A key pasted where an output file's path belongs names no file.

`encpipe seal -o KEY`, `encpipe keygen -o KEY` and `encpipe-backup --metrics-file
KEY` each make the file they are given: before, a file named after the key, which
any user who can list its directory reads (the metrics file's error lines named
it too). Refused (64) as a key is refused where a command or a database's name
belongs: one line, the value not shown, nothing on standard output, nothing made.
A file of that name that is there already is no new leak: written as before.
"""

import os
import subprocess
from pathlib import Path

import pytest

from fuzz.craft import clean_env, command

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
KEY = "3a" * 32
SECRET_FORMS = {"a raw key": KEY, "an X25519 identity": "ENCPIPE-SECRET-KEY-1" + "Q" * 58,
                "a signing key": "encpipe-signing-key-1" + "q" * 58}


def _assert_refused(done, kind, secret, option, made):
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (64, b""), err
    first = err.splitlines()[0]
    assert first.endswith(f"error: {option}: {kind} (a secret, not shown), not a file name"), err
    assert err.count("error: ") == 1, err
    assert secret not in err and secret.lower() not in err.lower(), err
    assert made == [], made


@pytest.mark.parametrize("kind", sorted(SECRET_FORMS))
@pytest.mark.parametrize("argv", [["seal", "--key-file", "KEYFILE", "-o"], ["seal", "--output"],
                                  ["keygen", "-o"], ["keygen", "--x25519", "-o"], ["keygen", "--sign", "-o"]])
def test_a_key_given_as_the_output_file_is_refused_and_never_made(tmp_path, argv, kind):
    secret = SECRET_FORMS[kind]
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    key_file = tmp_path / "k"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    words = [str(key_file) if w == "KEYFILE" else w for w in argv]
    done = subprocess.run(command(*words, secret), input=b"data", capture_output=True, cwd=work, timeout=60,
                          env=clean_env({"ENCPIPE_KEY": KEY}))
    _assert_refused(done, kind, secret, "-o", os.listdir(work))  # named so as --output too


def test_a_file_already_named_so_is_written_as_before(tmp_path):
    """Its name is no news to whoever can list the directory: seal -o replaces it."""
    (tmp_path / KEY).write_bytes(b"old")
    (tmp_path / KEY).chmod(0o600)
    done = subprocess.run(command("seal", "-o", KEY), input=b"data", capture_output=True, cwd=tmp_path, timeout=60,
                          env=clean_env({"ENCPIPE_KEY": KEY}))
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert (tmp_path / KEY).read_bytes()[:4] != b"old"
    opened = subprocess.run(command("open", KEY), capture_output=True, cwd=tmp_path, timeout=60,
                            env=clean_env({"ENCPIPE_KEY": KEY}))
    assert (opened.returncode, opened.stdout) == (0, b"data"), opened.stderr


@pytest.mark.parametrize("kind", sorted(SECRET_FORMS))
def test_a_key_given_as_the_metrics_file_of_a_backup_is_refused_and_never_made(tmp_path, kind):
    """Before: the run failed (no server) and was recorded in a metrics file named after the key."""
    secret = SECRET_FORMS[kind]
    env = clean_env({"ENCPIPE_KEY": KEY, "PYTHONPATH": str(SCRIPTS.parent), "PGHOST": str(tmp_path / "no-server")})
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    done = subprocess.run([str(SCRIPTS / "encpipe-backup"), "--dir", str(tmp_path / "b"), "--metrics-file", secret,
                           "shop"], stdin=subprocess.DEVNULL, capture_output=True, env=env, cwd=work, timeout=60)
    _assert_refused(done, kind, secret, "--metrics-file", os.listdir(work))
    assert not (tmp_path / "b").exists()
