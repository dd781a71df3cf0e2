"""A restore that an encpipe child refuses says so in ONE line, its own, with the
child's reason folded in: before, the child's `encpipe: error:` line (and its
`hint:` line) reached standard error first, then restore's own, three lines for
one failure (the demo's forgery). The child's hint is the line's hint when the
restore has none of its own; its warnings still reach standard error, failure or not."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_backup_restore import (RESTORE, backup, databases, dump, ensure_small, leftover_databases, make_legacy_file,
                                 python_env, restore, script_env)

from encpipe import childerr


def _encpipe(*args, data=None):
    return subprocess.run([sys.executable, "-m", "encpipe", *args], input=data, check=True, capture_output=True,
                          env=python_env()).stdout


def _key_id(*args):
    return _encpipe("keyid", *args).decode().strip()


def _refused(pg, proc, db, live, status):
    assert (proc.returncode, proc.stdout) == (status, b""), proc.stderr.decode()
    assert dump(pg, db) == live and leftover_databases(pg) == set()
    return proc.stderr.decode()


def test_a_forged_unsigned_backup_is_one_line(pg, tools, key_file, tmp_path):
    """The demo's forgery: a dump sealed with the key by someone without the signing key."""
    verify = _encpipe("keygen", "--sign", "-o", str(tmp_path / "s.sign")).decode().strip()
    signers = tmp_path / "signers"
    signers.write_text(verify + "\n")
    db = ensure_small(pg, "oneline_forged")
    live = dump(pg, db)
    forged = tmp_path / "forged.sql.enc"
    forged.write_bytes(_encpipe("seal", "--key-file", key_file, data=b"DROP TABLE t;\n"))
    proc = restore(pg, tools, str(forged), db, "--key-file", key_file, "--signer-file", str(signers))
    assert _refused(pg, proc, db, live, 67) == (
        f"encpipe-restore: error: cannot decrypt {forged} (status 67): not signed by a trusted signer (unsigned); "
        f"database {db} was not touched\n"
        f"encpipe-restore: hint: trusted: {_key_id('--signer', verify)}\n")


def test_a_backup_no_key_opens_is_one_line_with_the_childs_hint(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "oneline_wrongkey")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--no-globals", "--key-file", key_file)
    live = dump(pg, db)
    other = tmp_path / "other.key"
    _encpipe("keygen", "-o", str(other))
    proc = restore(pg, tools, path, db, "--no-globals", "--key-file", str(other))
    assert _refused(pg, proc, db, live, 77) == (
        f"encpipe-restore: error: cannot decrypt {path} (status 77): no supplied key opens this file; "
        f"database {db} was not touched\n"
        f"encpipe-restore: hint: it can be opened by: raw-key {_key_id('--key-file', key_file)}\n")


def test_a_damaged_backup_is_one_line(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "oneline_damaged")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--no-globals", "--key-file", key_file)
    live = dump(pg, db)
    sealed = bytearray(Path(path).read_bytes())
    sealed[len(sealed) // 2] ^= 1
    Path(path).write_bytes(bytes(sealed))
    proc = restore(pg, tools, path, db, "--no-globals", "--key-file", key_file)
    stderr = _refused(pg, proc, db, live, 65)
    assert re.fullmatch(re.escape(f"encpipe-restore: error: cannot decrypt {path} (status 65): chunk ") + "[0-9]+"
                        + re.escape(" failed authentication: the file is truncated, corrupt or was tampered with; "
                                    f"database {db} was not touched\n"), stderr), stderr


def test_a_refused_backup_into_a_new_database_is_one_line(pg, tools, key_file, tmp_path):
    """--no-globals, a database the server lacks: before, a warning that it would
    belong to the restoring role came first, for a database never made; and the
    line said that database "was not touched", as if there were one."""
    db = ensure_small(pg, "oneline_new")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--no-globals", "--key-file", key_file)
    sealed = bytearray(Path(path).read_bytes())
    sealed[len(sealed) // 2] ^= 1
    Path(path).write_bytes(bytes(sealed))
    before = databases(pg)
    proc = restore(pg, tools, path, db + "_new", "--no-globals", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr.decode()
    assert re.fullmatch(re.escape(f"encpipe-restore: error: cannot decrypt {path} (status 65): chunk ") + "[0-9]+"
                        + re.escape(" failed authentication: the file is truncated, corrupt or was tampered with; "
                                    f"database {db}_new was not created\n"), proc.stderr.decode()), proc.stderr
    assert databases(pg) == before


def test_a_failed_restore_into_a_new_name_says_the_database_was_not_created(pg, tools, key_file, tmp_path):
    """A dump whose SQL fails, restored under a name the server lacks: before, "restoring
    FILE failed; database NAME is unchanged", of a database there never was."""
    path = tmp_path / "oneline_failing_20250101T000000Z.sql.enc"
    path.write_bytes(_encpipe("seal", "--key-file", key_file, data=b"CREATE TABLE t (x integer);\nSELECT 1/0;\n"))
    pg.dropdb("oneline_failing_new")
    before = databases(pg)
    proc = restore(pg, tools, str(path), "oneline_failing_new", "--no-globals", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (1, b""), proc.stderr.decode()
    errors = [line for line in proc.stderr.decode().splitlines() if line.startswith("encpipe-restore: error: ")]
    assert errors == [f"encpipe-restore: error: restoring {path} failed; database oneline_failing_new was not created"]
    assert databases(pg) == before and leftover_databases(pg) == set()


@pytest.mark.parametrize("target, left", [("oneline_empty_new", "was not created"),
                                          ("oneline_empty", "was not touched")])
def test_a_backup_that_holds_no_data_says_what_became_of_the_target(pg, tools, key_file, tmp_path, target, left):
    """An empty dump: a database the server lacks was not created (before: "was not
    touched", of a database there never was); one it has was not touched."""
    path = tmp_path / "oneline_empty_20250101T000000Z.sql.enc"
    path.write_bytes(_encpipe("seal", "--key-file", key_file, data=b""))
    pg.dropdb("oneline_empty_new")
    ensure_small(pg, "oneline_empty")
    before, live = databases(pg), dump(pg, "oneline_empty")
    proc = restore(pg, tools, str(path), target, "--no-globals", "--key-file", key_file)
    assert (proc.returncode, proc.stdout, proc.stderr.decode()) == (
        65, b"", f"encpipe-restore: error: {path} holds no data; database {target} {left}\n")
    assert databases(pg) == before and dump(pg, "oneline_empty") == live


def test_a_refusal_before_the_server_is_asked_says_nothing_was_changed(pg, tools, key_file, tmp_path):
    """The globals file refused, under a name the server lacks: the restore had not
    asked whether it exists, and said "database NAME was not touched" of it. Nothing
    was changed, whichever it is: so says the line."""
    db = ensure_small(pg, "oneline_globals_src")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    globals_file = next((tmp_path / "b").glob("*.globals.sql.enc"))
    globals_file.write_bytes(globals_file.read_bytes()[:-1])
    pg.dropdb("oneline_globals_new")
    before = databases(pg)
    proc = restore(pg, tools, path, "oneline_globals_new", "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr.decode()
    line = proc.stderr.decode().splitlines()[0]
    assert line.startswith(f"encpipe-restore: error: cannot decrypt the globals file {globals_file} (status 65): ")
    assert line.endswith("; nothing was changed") and "not touched" not in line, line
    assert databases(pg) == before


def test_a_refused_globals_file_is_one_line_naming_it(pg, tools, key_file, tmp_path):
    """The child read /dev/fd/N; the line names the globals file."""
    db = ensure_small(pg, "oneline_globals")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    live = dump(pg, db)
    globals_file = next((tmp_path / "b").glob("*.globals.sql.enc"))
    globals_file.write_bytes(globals_file.read_bytes()[:-1])
    proc = restore(pg, tools, path, db, "--key-file", key_file)
    lines = _refused(pg, proc, db, live, 65).splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"encpipe-restore: error: cannot decrypt the globals file {globals_file} "
                               f"(status 65): "), lines
    assert "/dev/fd/" not in lines[0] and lines[0].endswith("; nothing was changed")
    assert lines[1] == ("encpipe-restore: hint: give the right one with --globals FILE, or restore without it with "
                        "--no-globals (no roles, no recorded database properties)")  # encpipe gave none


def test_a_legacy_file_that_does_not_authenticate_is_one_line(pg, tools, tmp_path):
    db = ensure_small(pg, "oneline_legacy")
    live = dump(pg, db)
    path = make_legacy_file(tmp_path / f"{db}_20250101T000000Z.sql.enc", "ab" * 32, b"SELECT 1;\n")
    proc = restore(pg, tools, path, db, env_extra={"BACKUP_ENCRYPTION_KEY": "cd" * 32})
    assert _refused(pg, proc, db, live, 77) == (
        f"encpipe-restore: error: cannot authenticate {path} (status 77): no supplied key authenticates this "
        "legacy file; nothing was changed\n"
        "encpipe-restore: hint: the key is wrong, or the file is damaged or truncated (the old format cannot tell "
        "which); tried: BACKUP_ENCRYPTION_KEY (hex key)\n")


def test_the_childs_warning_still_reaches_stderr_on_success(pg, tools, tmp_path):
    """--allow-unauthenticated with an x25519 identity: encpipe open's warning, as before."""
    identity = tmp_path / "x.id"
    public = _encpipe("keygen", "--x25519", "-o", str(identity)).decode().strip()
    db = ensure_small(pg, "oneline_warns")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--no-globals", "--recipient", public)
    proc = restore(pg, tools, path, db + "_copy", "--no-globals", "--allow-unauthenticated", "--identity",
                   str(identity))
    try:
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        child = ("encpipe: warning: opened with an x25519 identity: anyone with its public key can make such a "
                 "file\nencpipe: hint: check who made it with --signer\n")  # its hint too: before, the relay kept it
        own = (f"encpipe-restore: warning: --no-globals: the database properties a globals file records are not "
               f"applied (owner, privileges, encoding and locale, connection limit, settings, comment): {db}_copy "
               f"will belong to {pg.user}, with default privileges and template0's encoding and locale\n")
        # the relay passes the child's on while restore says this
        restored = f"encpipe-restore: restored {path} into new database {db}_copy\n"
        assert proc.stderr.decode() in (child + own + restored, own + child + restored), proc.stderr.decode()
    finally:
        pg.dropdb(db + "_copy")


# --- the relay itself: bounded, nothing lost but what it folds -------------------------------


def test_the_relay_keeps_error_and_hint_and_passes_the_rest(capfd):
    proc, said = childerr.started(subprocess.Popen, [sys.executable, "-c", "import sys; sys.stderr.write("
                                                     "'encpipe: warning: w1\\nencpipe: error: e1\\nencpipe: hint: h1\\n"
                                                     "encpipe: error: e2\\nencpipe: seal: 1 MiB\\n')"])
    proc.wait()
    assert said.wait() == ("e1", "h1")
    assert capfd.readouterr().err == "encpipe: warning: w1\nencpipe: seal: 1 MiB\n"


def test_the_relay_passes_on_a_warnings_hint_and_keeps_only_the_errors(capfd):
    """A hint line is its line before's: a warning's is passed on with it, never
    taken for the error's (the restore's line then showed a hint about another thing)."""
    proc, said = childerr.started(subprocess.Popen, [sys.executable, "-c", "import sys; sys.stderr.write("
                                                     "'encpipe: warning: w1\\nencpipe: hint: wh\\n"
                                                     "encpipe: error: e1\\n')"])
    proc.wait()
    assert said.wait() == ("e1", None)
    assert capfd.readouterr().err == "encpipe: warning: w1\nencpipe: hint: wh\n"


def test_the_relay_keeps_at_most_line_max_bytes_of_a_huge_error_line(capfd):
    size = 64 * childerr.LINE_MAX
    proc, said = childerr.started(subprocess.Popen, [sys.executable, "-c", "import sys; sys.stderr.write("
                                                     f"'encpipe: error: ' + 'x' * {size} + '\\nencpipe: warning: w\\n')"])
    proc.wait()
    error, hint = said.wait()
    assert hint is None and set(error) == {"x"} and len(error) == childerr.LINE_MAX - len("encpipe: error: ")
    assert capfd.readouterr().err == "encpipe: warning: w\n"


def test_the_relay_closes_its_pipe_when_the_child_cannot_start():
    before = len(os.listdir("/proc/self/fd"))
    try:
        childerr.started(subprocess.Popen, ["/nonexistent/encpipe"])
    except OSError:
        pass
    assert len(os.listdir("/proc/self/fd")) == before


def test_the_relay_passes_on_a_prompt_that_waits_for_its_answer(capfd, tmp_path):
    """A key command that asks on standard error (its standard output is the key): the
    question, which ends in no newline, shows while it waits; before, it was held
    back until the child ended. A line that may become an error line is still held."""
    go = tmp_path / "go"
    proc, said = childerr.started(subprocess.Popen, [sys.executable, "-c", f"""if 1:
        import os, sys, time
        e = sys.stderr.buffer
        e.write(b"key password: "); e.flush()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.02)
        e.write(b"\\nencpipe: err"); e.flush(); time.sleep(0.2)
        e.write(b"or: e1\\ncaf\\xc3"); e.flush(); time.sleep(0.2)
        e.write(b"\\xa9\\n"); e.flush()"""])
    try:
        shown, deadline = "", time.monotonic() + 20
        while shown != "key password: " and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            shown += capfd.readouterr().err
        assert shown == "key password: "
    finally:
        go.touch()
    proc.wait()
    assert said.wait() == ("e1", None)
    assert capfd.readouterr().err == "\ncafé\n"  # a character split between two writes is whole


def test_a_key_commands_prompt_shows_while_it_waits(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "oneline_prompt")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--no-globals", "--key-file", key_file)
    go = tmp_path / "go"
    command = f"printf 'key password: ' >&2; while [ ! -e {go} ]; do sleep 0.05; done; cat {key_file}"
    proc = subprocess.Popen([RESTORE, "--no-globals", "--key-command", command, path, db + "_copy"],
                            env=script_env(pg, tools),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        os.set_blocking(proc.stderr.fileno(), False)
        shown, deadline = b"", time.monotonic() + 30
        while not shown.endswith(b"key password: ") and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            shown += proc.stderr.read() or b""
        assert shown == b"key password: "
    finally:
        go.touch()
        os.set_blocking(proc.stderr.fileno(), True)
        out, err = proc.communicate(timeout=120)
    try:
        assert (proc.returncode, out) == (0, b""), err
        assert (shown + err).decode() == (
            f"key password: encpipe-restore: warning: --no-globals: the database properties a globals file records "
            f"are not applied (owner, privileges, encoding and locale, connection limit, settings, comment): {db}_copy "
            f"will belong to {pg.user}, with default privileges and template0's encoding and locale\n"
            f"encpipe-restore: restored {path} into new database {db}_copy\n")
    finally:
        pg.dropdb(db + "_copy")


def test_the_relay_ends_with_the_child_not_with_what_it_left_behind(capfd, tmp_path):
    """A key command that leaves a process behind holding standard error (the
    child's pipe): once the child ended, what it wrote is passed on and wait()
    returns; before, each encpipe of the restore then waited 10 s for it."""
    pid_file = tmp_path / "pid"
    proc, said = childerr.started(subprocess.Popen, ["/bin/sh", "-c", f"sleep 30 & echo $! > {pid_file}; "
                                                     "echo 'encpipe: warning: w' >&2; echo 'encpipe: error: e1' >&2"])
    try:
        proc.wait()
        begun = time.monotonic()
        assert said.wait() == ("e1", None)
        assert time.monotonic() - begun < 3
        assert capfd.readouterr().err == "encpipe: warning: w\n"
    finally:
        os.kill(int(pid_file.read_text()), 9)


def test_a_server_not_there_is_one_line_and_a_hint_at_where_the_clients_look(pg, tools, key_file, tmp_path):
    """psql's first line alone (`connection to server on socket ... failed: No such file
    or directory`) left out libpq's second, which asks whether the server runs: the
    line now comes with a hint at PGHOST and PGPORT."""
    db = ensure_small(pg, "oneline_no_server")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    nowhere = tmp_path / "nosocket"
    nowhere.mkdir()
    proc = restore(pg, tools, path, db + "_copy", "--key-file", key_file, env_extra={"PGHOST": str(nowhere)})
    assert (proc.returncode, proc.stdout) == (1, b"")
    said = proc.stderr.decode().splitlines()
    assert len(said) == 2 and said[0].startswith("encpipe-restore: error: psql: error: connection to server on socket")
    assert said[0].endswith("failed: No such file or directory; nothing was changed")
    assert said[1] == ("encpipe-restore: hint: is the server running? PGHOST and PGPORT (or PGSERVICE) say where the "
                       "clients look for it; on Debian, pg_lsclusters lists the clusters and their ports")
    assert db + "_copy" not in databases(pg)
