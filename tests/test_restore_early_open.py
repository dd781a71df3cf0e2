"""encpipe-restore starts `encpipe open --verify-first` of FILE before it reaches the
server, so that the file is read and authenticated while the restore's own checks
run (ENCPIPE_KEY's keyid, psql's version, DBNAME in use, the leftovers of killed
runs); its output waits in its pipe, nothing is created before it authenticated.
A restore that fails or is stopped before it uses that stream ends it: here a
stand-in for `encpipe open` that never ends is left neither by a refused
restore (DBNAME in use: 75, its one line only) nor by one stopped by a signal
while the key check (a keyid that never ends: ENCPIPE_KEY's, or a key file's)
runs beside it. With a passphrase (scrypt's memory) or a key source that may prompt or run a command,
the open starts as before, once the globals file was read: never beside another.
A key file that is a named FIFO is read once and lent to each encpipe: the open
starts early with it too."""

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

from procs import alive, ended_afterwards, shell_status
from test_backup_restore import (RESTORE, backup, ensure_small, leftover_databases, python_env, read_key, restore,
                                 script_env)
from test_restore_edges import PREFIX, _end, _hold
from test_restore_hardening import TARGET, _fresh_target


def _stand_in(tmp_path, hangs):
    """An ENCPIPE whose commands in `hangs` (keyid, open) write their pid to a file of
    their name and wait for ever; the others run this encpipe."""
    encpipe = tmp_path / "encpipe-stand-in"
    cases = "".join(f"  {name}) echo $$ > {tmp_path / name}.tmp && mv {tmp_path / name}.tmp {tmp_path / name}; "
                    f"exec sleep 1000 ;;\n" for name in hangs)
    encpipe.write_text(f"#!/bin/sh\ncase \"$1\" in\n{cases}esac\nexec {shlex.quote(sys.executable)} -m encpipe \"$@\"\n")
    encpipe.chmod(0o755)
    return str(encpipe)


def _pid(path):
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return int(path.read_text())


def test_a_restore_refused_before_it_begins_ends_the_open_it_started(pg, tools, key_file, tmp_path):
    source = ensure_small(pg, "early_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file, "--no-globals")
    _fresh_target(pg)
    holder = _hold(pg, TARGET)
    opener = None
    try:
        proc = restore(pg, tools, path, TARGET, "--no-globals", "--key-file", key_file,
                       env_extra={"ENCPIPE": _stand_in(tmp_path, ["open"])})
        assert (proc.returncode, proc.stdout) == (75, b""), proc.stderr.decode()
        assert proc.stderr == (PREFIX + b"error: database %s has 1 active connection(s); nothing was changed\n"
                               % TARGET.encode() + PREFIX + b"hint: close them, or use --terminate-connections\n")
        opener = _pid(tmp_path / "open")  # it had started before the server was asked
        time.sleep(0.2)
        assert not alive(opener)
        assert leftover_databases(pg) == set()
    finally:
        _end(holder)
        if opener:
            with contextlib.suppress(ProcessLookupError):
                os.kill(opener, signal.SIGKILL)


def _stopped_leaving_nothing(pg, proc, signum, status, children):
    """`proc` (a restore into early_target) sent `signum`: it dies of it (`status`) with
    nothing on its standard output or error, none of `children` left running, and
    no early_target made."""
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    time.sleep(0.2)
    assert (shell_status(proc.returncode), out, err) == (status, b"", b"")
    assert [pid for pid in children if alive(pid)] == []
    assert "early_target" not in pg.psql("SELECT datname FROM pg_database")


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
@pytest.mark.parametrize("given", ["ENCPIPE_KEY", "--key-file"])
def test_a_restore_stopped_during_the_key_check_ends_it_and_the_open(pg, tools, key_file, tmp_path, signum, status,
                                                                     given):
    source = ensure_small(pg, "early_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file, "--no-globals")
    env = {**script_env(pg, tools), "ENCPIPE": _stand_in(tmp_path, ["keyid", "open"])}
    if given == "ENCPIPE_KEY":
        env["ENCPIPE_KEY"], options = read_key(key_file), []
    else:  # a key file's keyid runs beside the open too, as ENCPIPE_KEY's
        options = ["--key-file", key_file]
    proc = subprocess.Popen([RESTORE, "--no-globals", *options, path, "early_target"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with ended_afterwards(proc) as children:
        children += [_pid(tmp_path / "keyid"), _pid(tmp_path / "open")]  # both run at once
        _stopped_leaving_nothing(pg, proc, signum, status, children)


def _refused_in_use_before_any_open(pg, tools, tmp_path, path, *key_options):
    """A restore of `path` with `key_options` into a TARGET in use: 75, and no `encpipe open`
    had started (the checks come first)."""
    _fresh_target(pg)
    holder = _hold(pg, TARGET)
    try:
        proc = restore(pg, tools, path, TARGET, "--no-globals", *key_options,
                       env_extra={"ENCPIPE": _stand_in(tmp_path, ["open"])})
        assert (proc.returncode, proc.stdout) == (75, b""), proc.stderr.decode()
        assert not (tmp_path / "open").exists()  # refused before any `encpipe open` ran
    finally:
        _end(holder)


def test_with_a_passphrase_the_open_starts_only_after_the_checks(pg, tools, key_file, tmp_path):
    source = ensure_small(pg, "early_source")
    passphrase = tmp_path / "pass"
    passphrase.write_text("correct horse battery staple\n")
    passphrase.chmod(0o600)
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--passphrase-file", str(passphrase), "--work-factor",
                     "10", "--no-globals")
    _refused_in_use_before_any_open(pg, tools, tmp_path, path, "--passphrase-file", str(passphrase))


def _serve_fifo_once(path, data):
    """A named FIFO at `path` whose writer gives `data` to its first reader, then no more."""
    os.mkfifo(path, 0o600)

    def serve():
        with open(path, "wb") as f:  # waits for a reader
            f.write(data)

    threading.Thread(target=serve, daemon=True).start()


def test_with_a_key_file_that_is_a_fifo_the_open_starts_early_with_its_copy(pg, tools, key_file, tmp_path):
    """A named FIFO given as --key-file is read once, at the start, and each encpipe
    gets a copy of its key at /dev/fd/M (fdsecrets), so the open starts early as with
    a regular file: two readers at once no longer share what its writer gives. Before,
    the open waited for the globals file; and a second open of a FIFO whose writer
    writes once waited for ever (tests/test_fifo_keys.py)."""
    source = ensure_small(pg, "early_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file, "--no-globals")
    fifo = tmp_path / "key.fifo"
    _serve_fifo_once(fifo, read_key(key_file).encode() + b"\n")
    _fresh_target(pg)
    holder = _hold(pg, TARGET)
    opener = None
    try:
        proc = restore(pg, tools, path, TARGET, "--no-globals", "--key-file", str(fifo),
                       env_extra={"ENCPIPE": _stand_in(tmp_path, ["open"])})
        assert (proc.returncode, proc.stdout) == (75, b""), proc.stderr.decode()
        opener = _pid(tmp_path / "open")  # it had started before the server was asked
        time.sleep(0.2)
        assert not alive(opener)
    finally:
        _end(holder)
        if opener:
            with contextlib.suppress(ProcessLookupError):
                os.kill(opener, signal.SIGKILL)


def test_a_key_files_refusal_comes_first_though_its_check_runs_beside_the_next(tmp_path):
    """The key file's keyid runs beside the next source's check and the restore's own
    steps: its refusal is still the one line, before a later source's (a passphrase
    file that is not there) and FILE's (not there either), as when it was waited for."""
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    bad.chmod(0o600)
    proc = subprocess.run([RESTORE, "--key-file", str(bad), "--passphrase-file", str(tmp_path / "none"),
                           str(tmp_path / "shop_20250101T000000Z.sql.enc"), "shop"],
                          env=python_env(), stdin=subprocess.DEVNULL, capture_output=True)
    assert (proc.returncode, proc.stdout) == (64, b"")
    assert proc.stderr == (PREFIX + b"error: --key-file: %s, line 1: a key must be 64 hex characters, not 9\n"
                           % str(bad).encode() + PREFIX + b"hint: see encpipe-restore --help\n")


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_the_globals_files_open_starts_beside_the_key_check_too(pg, tools, key_file, tmp_path, signum, status):
    """With FILE's run's globals file beside it, `encpipe open` of that file starts
    beside the key check as FILE's does (before, only once the key check was over):
    both run while a keyid that never ends runs; a stop ends the run and them."""
    source = ensure_small(pg, "early_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file)
    opens = tmp_path / "opens"
    encpipe = tmp_path / "encpipe-stand-in"
    encpipe.write_text(f"#!/bin/sh\ncase \"$1\" in\n  keyid) echo $$ > {tmp_path}/keyid.tmp && mv {tmp_path}/keyid.tmp "
                       f"{tmp_path}/keyid; exec sleep 1000 ;;\n  open) echo \"$$ $*\" >> {opens} ;;\nesac\n"
                       f"exec {shlex.quote(sys.executable)} -m encpipe \"$@\"\n")
    encpipe.chmod(0o755)
    proc = subprocess.Popen([RESTORE, "--key-file", key_file, path, "early_target"],
                            env={**script_env(pg, tools), "ENCPIPE": str(encpipe)}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with ended_afterwards(proc) as children:
        children.append(_pid(tmp_path / "keyid"))
        deadline = time.monotonic() + 60
        while len(opens.read_text().splitlines() if opens.exists() else []) < 2:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        children += [int(line.split()[0]) for line in opens.read_text().splitlines()]
        assert all("--verify-first" in line.split() for line in opens.read_text().splitlines())
        _stopped_leaving_nothing(pg, proc, signum, status, children)
