"""encpipe-restore runs no shell command a dump asks for, and nothing from an unauthenticated file.

- Plain dumps go to psql in restricted mode (\\restrict with a fresh key): a
  dump's `\\!` or `\\copy ... to program` stops the restore, runs nothing, and
  the live database stays as it was. A psql too old for \\restrict is refused
  unless --allow-unrestricted-psql.
- A custom archive's SQL (pg_restore -f -) goes to the same restricted psql: a
  crafted archive's `\\!` runs nothing either; with an old psql allowed, the
  archive goes to pg_restore -d.
- `--role ROLE` restores connected as ROLE: superuser-only SQL in a dump fails.
- A legacy file is authenticated before anything: a tampered one runs no
  psql or pg_restore and creates no database.
"""

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_backup_restore import (
    RESTORE,
    backup,
    databases,
    dump,
    encpipe,
    ensure_awkward,
    ensure_small,
    leftover_databases,
    make_legacy_file,
    python_env,
    read_key,
    restore,
    run,
    script_env,
)

TARGET = "hard_target"


def _seal(tmp_path, key, plaintext, name):
    path = tmp_path / name
    encpipe(["seal", "--key-file", key, "-o", str(path)], input=plaintext, check=True)
    return str(path)


def _fresh_target(pg):
    pg.dropdb(TARGET)
    pg.createdb(TARGET)
    pg.psql("CREATE TABLE precious (x text); INSERT INTO precious VALUES ('keep me');", db=TARGET)
    return dump(pg, TARGET)


def _fake_psql(tmp_path, pg, version="15.13"):
    """A psql that reports an old version and logs every other call before running the real one."""
    fake = tmp_path / "fakebin"
    fake.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    for tool in ("psql", "pg_restore"):
        body = 'printf "%%s\\n" "$*" >>%s\n' % shlex.quote(str(log))
        if tool == "psql" and version:
            body = 'if [ "$1" = --version ]; then echo "psql (PostgreSQL) %s"; exit 0; fi\n' % version + body
        (fake / tool).write_text("#!/bin/sh\n%sexec %s \"$@\"\n" % (body, shlex.quote(pg.bin(tool))))
        (fake / tool).chmod(0o755)
    return fake, log


def _env_with(pg, tools, directory):
    env = script_env(pg, tools)
    env["PATH"] = "%s:%s" % (directory, env["PATH"])
    return env


@pytest.mark.parametrize("attack", [
    b"\\! touch {marker}\n",
    b"\\copy (SELECT 1) TO PROGRAM 'touch {marker}'\n",
    b"\\unrestrict guessed\n\\! touch {marker}\n",
    b"\\connect postgres\n\\! touch {marker}\n",
    b"\\o {marker}\nSELECT 1;\n",
    b"\\copy (SELECT 1) TO '{marker}'\n",
    b"SELECT 1 \\w {marker}\n",
    b"SELECT 1; \\! touch {marker}\n",
    b"   \\! touch {marker}\n",
    b"SELECT 1 \\restrict x\n\\! touch {marker}\n",
    b"\\setenv PAGER 'touch {marker}'\n\\! true\n",
])
def test_a_dump_cannot_run_shell_commands(pg, tools, key_file, tmp_path, attack):
    db = ensure_small(pg, "hard_source")
    marker = tmp_path / "MARKER"
    genuine = dump(pg, db)
    head, tail = genuine.split(b"\nCREATE TABLE", 1)
    evil = head + b"\n" + attack.replace(b"{marker}", str(marker).encode()) + b"CREATE TABLE" + tail
    path = _seal(tmp_path, key_file, evil, "evil.sql.enc")
    before = _fresh_target(pg)
    proc = restore(pg, tools, path, TARGET, "--key-file", key_file)
    assert proc.returncode == 1, proc.stderr.decode()
    assert proc.stdout == b""
    assert not marker.exists()
    assert dump(pg, TARGET) == before
    assert leftover_databases(pg) == set()


def test_the_dumps_own_restrict_lines_are_dropped(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "hard_source")
    genuine = dump(pg, db)
    path = _seal(tmp_path, key_file, b"\\restrict k1\n" + genuine + b"\\unrestrict k1\n", "ok.sql.enc")
    pg.dropdb("hard_copy")
    proc = restore(pg, tools, path, "hard_copy", "--key-file", key_file)
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, "hard_copy") == genuine
    pg.dropdb("hard_copy")


def test_an_old_psql_is_refused_unless_allowed(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "hard_source")
    genuine = dump(pg, db)
    path = _seal(tmp_path, key_file, genuine, "ok.sql.enc")
    fake, log = _fake_psql(tmp_path, pg)
    env = _env_with(pg, tools, fake)
    before = _fresh_target(pg)
    proc = run([RESTORE, "--key-file", key_file, path, TARGET], env)
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert b"psql 15.13 cannot restrict" in proc.stderr and b"--allow-unrestricted-psql" in proc.stderr
    assert not log.exists()  # nothing but psql --version ran
    assert dump(pg, TARGET) == before

    proc = run([RESTORE, "--allow-unrestricted-psql", "--drop-old", "--key-file", key_file, path, TARGET], env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"warning: psql 15.13 cannot restrict a dump's meta-commands: they will run on this host" in proc.stderr
    assert dump(pg, TARGET) == genuine
    pg.dropdb(TARGET)


@pytest.mark.parametrize("psql", ["restricting", "old, allowed"])
def test_a_custom_archive_cannot_run_shell_commands(pg, tools, key_file, tmp_path, psql):
    """pg_restore -f - writes an archive's statements as they are: one crafted into
    `\\! touch M` reaches psql as a meta-command, which restricted mode refuses. With
    an old psql (--allow-unrestricted-psql), the archive goes to pg_restore -d, which
    sends it to the server as SQL. Either way the restore fails and runs nothing."""
    db = ensure_small(pg, "hard_source")
    archive = subprocess.run([pg.bin("pg_dump"), "-Fc", db], env=pg.env, capture_output=True, check=True).stdout
    start = archive.index(b"CREATE TABLE public.t (")
    end = archive.index(b");\n", start) + 3
    attack = b"\\! touch M\n"
    evil = archive[:start] + attack + b"-" * (end - start - len(attack) - 1) + b"\n" + archive[end:]
    path = _seal(tmp_path, key_file, evil, "evil.dump.enc")
    env, options = script_env(pg, tools), []
    if psql != "restricting":
        fake, log = _fake_psql(tmp_path, pg)
        env, options = _env_with(pg, tools, fake), ["--allow-unrestricted-psql"]
    before = _fresh_target(pg)
    proc = run([RESTORE, *options, "--key-file", key_file, path, TARGET], env, cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, b""), proc.stderr.decode()
    assert not (tmp_path / "M").exists()
    assert dump(pg, TARGET) == before
    assert leftover_databases(pg) == set()
    if psql != "restricting":
        calls = log.read_text().splitlines()  # pg_restore's and psql's arguments
        assert any(c.startswith("--no-password --exit-on-error --single-transaction -d encpipe_restore_")
                   for c in calls), calls  # never a password asked: tests/test_client_passwords.py


def test_role_restores_with_that_roles_rights_only(pg, tools, key_file, tmp_path):
    pg.psql("DROP ROLE IF EXISTS restorer; CREATE ROLE restorer LOGIN CREATEDB")
    db = ensure_small(pg, "hard_source")
    genuine = dump(pg, db, "--no-owner")
    marker = tmp_path / "server-side"
    evil = genuine + b"COPY (SELECT 1) TO PROGRAM 'touch %s';\n" % str(marker).encode()
    path = _seal(tmp_path, key_file, evil, "evil.sql.enc")
    before = _fresh_target(pg)
    # psql's whole message (-v VERBOSITY=default), which names the right the role lacks
    proc = run([RESTORE, "--role", "restorer", "--key-file", key_file, path, TARGET, "--", "-v", "VERBOSITY=default"],
               script_env(pg, tools))
    assert proc.returncode == 1
    assert b"pg_execute_server_program" in proc.stderr
    assert not marker.exists()
    assert dump(pg, TARGET) == before

    path = _seal(tmp_path, key_file, genuine, "ok.sql.enc")
    pg.dropdb("hard_as_role")
    proc = restore(pg, tools, path, "hard_as_role", "--role", "restorer", "--key-file", key_file)
    assert proc.returncode == 0, proc.stderr.decode()
    assert pg.psql("SELECT tableowner FROM pg_tables WHERE tablename = 't'", db="hard_as_role") == "restorer\n"
    assert dump(pg, "hard_as_role", "--no-owner") == genuine
    pg.dropdb("hard_as_role")
    assert leftover_databases(pg) == set()


def test_a_tampered_legacy_file_runs_nothing(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "hard_source")
    path = make_legacy_file(tmp_path / "old_backup_2024-01-02_03-04-05-678Z.sql.enc", read_key(key_file),
                            b"\\! touch " + str(tmp_path / "MARKER").encode() + b"\n" + dump(pg, db))
    data = bytearray(Path(path).read_bytes())
    data[64 + 3] ^= 0x01
    Path(path).write_bytes(bytes(data))
    fake, log = _fake_psql(tmp_path, pg, version=None)
    before, existing = _fresh_target(pg), databases(pg)
    proc = run([RESTORE, "--key-file", key_file, path, TARGET], _env_with(pg, tools, fake))
    assert (proc.returncode, proc.stdout) == (77, b"")
    assert b"; nothing was changed\n" in proc.stderr and b"not touched" not in proc.stderr
    assert [line for line in log.read_text().splitlines() if line != "--version"] == []
    assert databases(pg) == existing and dump(pg, TARGET) == before
    assert not os.path.exists(tmp_path / "MARKER")


# --- leftovers of killed restores, and the copies restores keep ---------------------


def _wait_until_unused(pg, prefix, timeout=120):
    """Orphans of a restore killed alone finish on their own; wait for them."""
    sql = ("SELECT count(*) FROM pg_stat_activity WHERE datname LIKE '%s%%' "
           "AND backend_type = 'client backend'" % prefix)
    deadline = time.monotonic() + timeout
    while pg.psql(sql).strip() != "0":
        assert time.monotonic() < deadline, "orphaned restores still running"
        time.sleep(0.2)


@pytest.mark.slow
def test_restore_killed_at_random_points_then_one_more_cleans_up(pg, tools, key_file, tmp_path):
    source = ensure_awkward(pg)
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file)
    target = "kill_target"
    for name in databases(pg):
        if name.startswith(target):
            pg.dropdb(name)
    started = time.monotonic()
    proc = restore(pg, tools, path, target, "--key-file", key_file)
    full_run = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr.decode()
    expected = dump(pg, target)
    rng = random.Random(20261202)
    env = script_env(pg, tools)
    for i in range(13):
        proc = subprocess.Popen([RESTORE, "--key-file", key_file, path, target], env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i < 12:
            time.sleep(rng.uniform(0.1, 1.1) * full_run)
        else:  # the last one surely while it restores: each run drops the leftovers before it
            while not [d for d in databases(pg) if d.startswith("encpipe_restore_")]:
                time.sleep(0.02)
        if i % 3:
            os.killpg(proc.pid, signal.SIGKILL)  # the restore and everything it started
        else:
            proc.kill()  # the restore alone: its children run on as orphans
        proc.wait()
        assert target in databases(pg)
        assert dump(pg, target) == expected
    _wait_until_unused(pg, "encpipe_restore_")
    left = {d for d in databases(pg) if d.startswith("encpipe_restore_")}
    assert left, "no kill hit a restore in progress"

    listing = json.loads(run([RESTORE, "--list-pre-restore"], env).stdout)
    copies = [c for c in listing if c["database"] == target]
    assert {c["name"] for c in copies} == {d for d in databases(pg) if d.startswith(target + "_pre_restore_")}
    assert all(c["bytes"] > 0 and c["age_days"] >= 0 for c in copies)

    proc = restore(pg, tools, path, target, "--key-file", key_file, "--drop-old",
                   "--drop-pre-restore-older-than", "0")
    assert proc.returncode == 0, proc.stderr.decode()
    report = proc.stderr.decode()
    assert all(name in report for name in left), report
    assert leftover_databases(pg) == set()
    assert dump(pg, target) == expected

    # DAYS counts: a copy younger than a day stays with --drop-pre-restore-older-than 1.
    proc = restore(pg, tools, path, target, "--key-file", key_file)  # keeps the old one as a copy
    assert proc.returncode == 0, proc.stderr.decode()
    fresh = {d for d in databases(pg) if d.startswith(target + "_pre_restore_")}
    assert len(fresh) == 1
    proc = restore(pg, tools, path, target, "--key-file", key_file, "--drop-old",
                   "--drop-pre-restore-older-than", "1")
    assert proc.returncode == 0, proc.stderr.decode()
    assert {d for d in databases(pg) if d.startswith(target + "_pre_restore_")} == fresh
    for name in fresh:
        pg.dropdb(name)
    pg.dropdb(target)


def test_scratch_database_of_a_live_restore_is_left_alone(pg, tools, key_file, tmp_path):
    """A scratch database whose lock is held (a restore still running) is not dropped."""
    from encpipe.pgleftovers import LOCK_CLASS

    db = ensure_small(pg, "hard_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    busy = "encpipe_restore_20000101T000000Z_1"
    dead = "encpipe_restore_20000101T000000Z_2"
    for name in (busy, dead):
        pg.dropdb(name)
        pg.createdb(name)
    holder = subprocess.Popen([pg.bin("psql"), "-X", "-q", "-d", "postgres"], env=pg.env, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        holder.stdin.write(b"SELECT pg_advisory_lock(%d, hashtext('%s'));\n" % (LOCK_CLASS, busy.encode()))
        holder.stdin.flush()
        while pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").strip() == "0":
            time.sleep(0.05)
        pg.dropdb("hard_copy")
        proc = restore(pg, tools, path, "hard_copy", "--key-file", key_file)
        assert proc.returncode == 0, proc.stderr.decode()
        assert dead.encode() in proc.stderr and busy.encode() not in proc.stderr
        assert busy in databases(pg) and dead not in databases(pg)
    finally:
        holder.stdin.close()
        holder.wait()
        pg.dropdb(busy)
        pg.dropdb("hard_copy")


def test_a_compressed_stream_cut_short_fails_the_restore(pg, tools, key_file, tmp_path):
    """zstd reports the damage after it wrote what it could: the restore must not count that as done."""
    plain = dump(pg, ensure_awkward(pg))
    packed = subprocess.run(["zstd", "-q", "-c"], input=plain, capture_output=True, check=True).stdout
    path = _seal(tmp_path, key_file, packed[: len(packed) * 2 // 3], "cut.sql.zst.enc")
    before = _fresh_target(pg)
    proc = restore(pg, tools, path, TARGET, "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (1, b""), proc.stderr.decode()
    assert dump(pg, TARGET) == before
    assert leftover_databases(pg) == set()


def test_signers_reach_every_encpipe_and_no_pg_client(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "hard_source")
    verify = []
    for n in range(3):  # three signing keys; the backup is signed by the first (encpipe-backup --sign-key)
        made = subprocess.run([sys.executable, "-m", "encpipe", "keygen", "--sign", "-o", str(tmp_path / f"s{n}.key")],
                              check=True, capture_output=True, env=python_env())
        verify.append(made.stdout.decode().strip())
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file, "--sign-key", str(tmp_path / "s0.key"))
    log = tmp_path / "signers.log"
    wrapper = tmp_path / "encpipe-logging"
    # every `encpipe open` (the key-source check before, `encpipe keyid`, needs no signer)
    wrapper.write_text('#!/bin/sh\n[ "$1" != open ] || printf "%%s\\n" "$ENCPIPE_SIGNER" >>%s\n'
                       'exec %s -m encpipe "$@"\n' % (shlex.quote(str(log)), shlex.quote(sys.executable)))
    wrapper.chmod(0o755)
    (tmp_path / "signers").write_text(f"{verify[1]}\n{verify[2]}\n")
    fake, calls = _fake_psql(tmp_path, pg, version=None)
    (fake / "psql").write_text((fake / "psql").read_text().replace('"$*"', '"$* ${ENCPIPE_SIGNER-unset}"'))
    env = _env_with(pg, tools, fake)
    env["ENCPIPE"] = str(wrapper)
    pg.dropdb("hard_signed")
    proc = run([RESTORE, "--key-file", key_file, "--signer", verify[0], "--signer-file", tmp_path / "signers",
                path, "hard_signed"], env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert set(log.read_text().splitlines()) == {" ".join(verify)}  # globals and dump alike
    assert all(line.endswith(" unset") for line in calls.read_text().splitlines())
    pg.dropdb("hard_signed")


def test_two_restores_within_one_second_keep_both_pre_restore_copies(pg, monkeypatch):
    """The old database is renamed to the first free `<db>_pre_restore_<second>`."""
    from datetime import datetime, timezone

    from encpipe import pgleftovers

    for name, value in pg.env.items():
        monkeypatch.setenv(name, value)
    now = datetime(2026, 12, 3, 1, 2, 3, tzinfo=timezone.utc)
    pg.createdb("same_second_pre_restore_20261203T010203Z")
    try:
        assert pgleftovers.pre_restore_name("postgres", "same_second", now) == \
            "same_second_pre_restore_20261203T010204Z"
        assert pgleftovers.pre_restore_name("postgres", "other", now) == "other_pre_restore_20261203T010203Z"
    finally:
        pg.dropdb("same_second_pre_restore_20261203T010203Z")
