"""Secret sources that never end: a key, identity, passphrase, recipient or signer
file that is /dev/zero (or a link to it), a passphrase descriptor reading it, a
key or passphrase command that prints for ever. Each is refused (64) once it
passed 1 MiB, with one error line and nothing on stdout, in bounded memory (the
processes run under a 1 GiB address-space limit: an unbounded read dies of it
as "out of memory", 74). encpipe-restore's --passphrase-fd and --signer-file alike.
"""

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from cliutil import KEY_A, assert_one_line_error, secret_file

ROOT = Path(__file__).resolve().parent.parent
RESTORE = str(ROOT / "scripts" / "encpipe-restore")
ADDRESS_SPACE = 1 << 30


def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCPIPE", "BACKUP_ENCRYPTION_KEY"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _run(argv, stdin=b"", **kwargs):
    with open("/dev/zero", "rb") as zero:
        return subprocess.run(argv, input=stdin, capture_output=True, env=_env(), preexec_fn=_limited,
                              pass_fds=(zero.fileno(),), timeout=60, **kwargs), zero.fileno()


def _sealed(tmp_path):
    key = secret_file(tmp_path, "k", KEY_A + "\n")
    path = tmp_path / "f.enc"
    subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", key, "-o", str(path)], input=b"data",
                   check=True, env=_env())
    return key, str(path)


def _zero_link(tmp_path):
    link = tmp_path / "looks-like-a.key"
    link.symlink_to("/dev/zero")
    return str(link)


SEAL_SOURCES = {
    "--key-file": lambda link, fd: ["--key-file", link],
    "--identity": lambda link, fd: ["--identity", link],
    "--passphrase-file": lambda link, fd: ["--passphrase-file", link],
    "--passphrase-fd": lambda link, fd: ["--passphrase-fd", "FD"],
    "--key-command": lambda link, fd: ["--key-command", "cat /dev/zero"],
    "--passphrase-command": lambda link, fd: ["--passphrase-command", "yes"],
    "--recipient-file": lambda link, fd: ["--recipient-file", link],
    "--sign-key": lambda link, fd: ["--key-file", "KEY", "--sign-key", link],
    "--sign-key-command": lambda link, fd: ["--key-file", "KEY", "--sign-key-command", "cat /dev/zero"],
}


@pytest.mark.parametrize("source", sorted(SEAL_SOURCES))
def test_an_endless_secret_source_is_refused_in_bounded_memory(tmp_path, source):
    key = secret_file(tmp_path, "k", KEY_A + "\n")
    args = SEAL_SOURCES[source](_zero_link(tmp_path), None)
    with open("/dev/zero", "rb") as zero:
        args = [str(zero.fileno()) if a == "FD" else key if a == "KEY" else a for a in args]
        proc = subprocess.run([sys.executable, "-m", "encpipe", "seal", *args], input=b"data", capture_output=True,
                              env=_env(), preexec_fn=_limited, pass_fds=(zero.fileno(),), timeout=60)
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr.decode()
    assert_one_line_error(proc.stderr)
    assert b"more than 1048576 bytes" in proc.stderr


@pytest.mark.parametrize("option", ["--signer-file", "--key-file"])
def test_open_with_an_endless_key_or_signer_file_is_64(tmp_path, option):
    key, path = _sealed(tmp_path)
    args = ["--key-file", key, "--signer-file", _zero_link(tmp_path)] if option == "--signer-file" \
        else ["--key-file", _zero_link(tmp_path)]
    proc, _ = _run([sys.executable, "-m", "encpipe", "open", *args, path])
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr.decode()
    assert_one_line_error(proc.stderr)


def test_pubkey_of_an_endless_file_is_64(tmp_path):
    proc, _ = _run([sys.executable, "-m", "encpipe", "pubkey", _zero_link(tmp_path)])
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr.decode()
    assert_one_line_error(proc.stderr)


def test_a_secret_of_exactly_the_limit_is_read_whole(tmp_path):
    """1 MiB of comment lines and one key: at the limit, accepted."""
    line = b"#" * 1023 + b"\n"
    key = (KEY_A + "\n").encode()
    body = line * ((1 << 20) // 1024 - 1) + b"#" * (1024 - len(key) - 1) + b"\n" + key
    assert len(body) == 1 << 20
    ring = tmp_path / "ring"
    ring.write_bytes(body)
    ring.chmod(0o600)
    sealed = subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", str(ring)], input=b"data",
                            capture_output=True, env=_env(), check=True).stdout
    proc = subprocess.run([sys.executable, "-m", "encpipe", "open", "--key-file", secret_file(tmp_path, "k", KEY_A)],
                          input=sealed, capture_output=True, env=_env())
    assert (proc.returncode, proc.stdout) == (0, b"data"), proc.stderr.decode()


@pytest.mark.parametrize("option", ["--passphrase-fd", "--signer-file"])
def test_encpipe_restore_refuses_an_endless_secret_before_anything(tmp_path, option):
    """Refused while the options are read: no database is needed to show it."""
    key, path = _sealed(tmp_path)
    with open("/dev/zero", "rb") as zero:
        value = str(zero.fileno()) if option == "--passphrase-fd" else _zero_link(tmp_path)
        proc = subprocess.run([RESTORE, option, value, "--key-file", key, path, "nowhere"], capture_output=True,
                              env=_env(), preexec_fn=_limited, pass_fds=(zero.fileno(),), timeout=60)
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr.decode()
    assert_one_line_error(proc.stderr, prog="encpipe-restore")
