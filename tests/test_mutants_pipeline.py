"""Behaviours of encpipe-restore's pipeline (encpipe/pgrestore.py, pgstream.py, pgprops.py,
pgopts.py) and of encpipe-sh-setup that a hand-made mutation review found no test pinned:
each test here fails on one mutant of the product code and passes on the code as it is.

- encpipe open's status is the restore's even after psql finished: a backup changed
  between open --verify-first's two passes lets its first chunks through, then fails;
- the scratch database's name is kept for undo() once CREATE DATABASE succeeded, also
  when a later step of its making fails (--role naming no role);
- the scratch database is created accepting no connection (ALLOW_CONNECTIONS false),
  until private_sql made it private;
- `pg_restore -f -`, which reaches no server, gets no libpq password;
- an explicit `-- -v VERBOSITY=sqlstate` still gets the hint that says how to see psql's messages;
- `encpipe-sh-setup --help` runs sed with an empty environment (encpipe_bare's exec -c).
"""

import os
import re
import shlex
import subprocess
import sys

from fuzz.craft import clean_env
from spies import install, python_head, records
from test_backup_restore import (RESTORE, SCRIPTS, backup, databases, dump, ensure_small, leftover_databases,
                                 python_env, restore, run, script_env)
from test_child_env import EVERY, _held


def _encpipe(*args, data=None):
    return subprocess.run([sys.executable, "-m", "encpipe", *args], input=data, check=True, capture_output=True,
                          env=python_env()).stdout


CHUNK = 16 << 10
# a plain dump of four 16 KiB chunks: the first two create the table, the last two fill it;
# each half ends with a whole line, so psql given the first half alone runs it without an error
_PAD = b"".join(b"-- padding line %06d of a dump spread over several chunks\n" % n for n in range(2000))


def _half(statement):
    return (statement + _PAD)[:2 * CHUNK - 1].rsplit(b"\n", 1)[0].ljust(2 * CHUNK - 1, b" ") + b"\n"


TWO_HALVES = _half(b"CREATE TABLE t (x integer);\n") + _half(b"INSERT INTO t SELECT generate_series(1, 100);\n")

# encpipe, as ENCPIPE names it: its `open` of FILE flips one byte of the file (the same inode) as the
# second pass begins, past the first half's records: what the first pass checked, the second does not read
FLIPPER = """
import os, sys
from encpipe import envelope

if sys.argv[1:2] == ["open"]:
    real = envelope.open_payload

    def flipping(source, out, *args, **kwargs):
        if out is not None and not os.path.exists(os.environ["FLIP_DONE"]):
            open(os.environ["FLIP_DONE"], "w").close()
            with open(os.environ["FLIP_FILE"], "r+b") as f:
                at = os.path.getsize(os.environ["FLIP_FILE"]) // 2 + 4000
                f.seek(at)
                byte = f.read(1)
                f.seek(at)
                f.write(bytes([byte[0] ^ 1]))
        return real(source, out, *args, **kwargs)

    envelope.open_payload = flipping
from encpipe.cli import run
run()
"""


def test_a_backup_changed_after_part_of_it_reached_psql_restores_nothing(pg, tools, key_file, tmp_path):
    """encpipe open failing once psql ran what it let out fails the restore (65), its scratch database dropped."""
    assert len(TWO_HALVES) == 4 * CHUNK
    path = tmp_path / "pin_halves.sql.enc"
    path.write_bytes(_encpipe("seal", "--key-file", key_file, "--chunk-size", "16K", data=TWO_HALVES))
    flipper, done = tmp_path / "flipper.py", tmp_path / "flipped"
    flipper.write_text(FLIPPER)
    env = {"ENCPIPE": f"{shlex.quote(sys.executable)} {shlex.quote(str(flipper))}",
           "FLIP_FILE": os.path.realpath(path), "FLIP_DONE": str(done)}
    pg.dropdb("pin_halves_new")
    before = databases(pg)
    proc = restore(pg, tools, str(path), "pin_halves_new", "--no-globals", "--key-file", key_file, env_extra=env)
    assert done.exists(), proc.stderr.decode()  # the byte was flipped
    assert (proc.returncode, proc.stdout) == (65, b""), proc.stderr.decode()
    lines = proc.stderr.decode().splitlines()
    assert lines[0].startswith("encpipe-restore: warning: --no-globals: "), lines  # said once psql was to start
    assert lines[1:] == [f"encpipe-restore: error: cannot decrypt {path} (status 65): chunk 2 failed authentication: "
                         "the file is corrupt or was tampered with; database pin_halves_new was not created"], lines
    assert databases(pg) == before and leftover_databases(pg) == set()


def test_a_scratch_database_whose_making_fails_after_its_create_is_dropped(pg, tools, key_file, tmp_path):
    """--role naming no role: the scratch database, created, then given to that role in vain, is dropped (1)."""
    db = ensure_small(pg, "pin_norole_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--no-globals", "--key-file", key_file)
    pg.psql("DROP ROLE IF EXISTS pin_no_such_role")
    pg.dropdb("pin_norole_new")
    before = databases(pg)
    proc = restore(pg, tools, path, "pin_norole_new", "--no-globals", "--key-file", key_file,
                   "--role", "pin_no_such_role")
    assert (proc.returncode, proc.stdout) == (1, b""), proc.stderr.decode()
    assert "encpipe-restore: error: cannot create the scratch database encpipe_restore_" in proc.stderr.decode()
    assert databases(pg) == before and leftover_databases(pg) == set()


def test_pg_restore_writing_an_archives_sql_gets_no_libpq_password(pg, tools, key_file, tmp_path):
    """`pg_restore -f -` reaches no server: PGPASSWORD is psql's only."""
    db = ensure_small(pg, "pin_archive_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--no-globals", "--key-file", key_file,
                     "--format", "custom")
    spies, log = tmp_path / "spies", tmp_path / "children.log"
    install(spies, {"psql": pg.bin("psql"), "pg_restore": pg.bin("pg_restore")}, log)
    env = script_env(pg, tools, PGPASSWORD="libpq-pw-pin-5e1d")  # the cluster trusts local connections
    env["PATH"] = "%s:%s" % (spies, env["PATH"])
    pg.dropdb("pin_archive_copy")
    try:
        proc = run([RESTORE, "--no-globals", "--key-file", key_file, path, "pin_archive_copy"], env)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert dump(pg, "pin_archive_copy") == dump(pg, db)
    finally:
        pg.dropdb("pin_archive_copy")
    seen = records(log)
    assert {r["tool"] for r in seen} == {"psql", "pg_restore"}, [r["tool"] for r in seen]
    for record in seen:  # pg_restore -f -, and psql --version, reach no server
        held = any("libpq-pw-pin-5e1d" in entry for entry in record["env"])
        assert held == ("-d" in record["argv"]), (record["tool"], record["argv"])


def test_encpipe_sh_setup_help_runs_sed_with_an_empty_environment(tmp_path):
    """encpipe-sh-setup --help: its sed (encpipe_bare) gets none of our variables, nor a descriptor above 2."""
    log, spies = tmp_path / "log", tmp_path / "spies"
    install(spies, {"sed": "/usr/bin/sed" if os.path.exists("/usr/bin/sed") else "/bin/sed"}, log)
    env = clean_env({**EVERY, "ENCPIPE_KEY": "5eed" * 16, "PATH": f"{spies}:{os.environ['PATH']}"})
    read_end, write_end = os.pipe()
    try:
        done = subprocess.run([os.path.join(SCRIPTS, "encpipe-sh-setup"), "--help"], capture_output=True, env=env,
                              pass_fds=(read_end,), timeout=60)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    assert done.stdout.startswith(b"encpipe-sh-setup: sourced (not run) by encpipe's shell scripts"), done.stdout
    [record] = records(log)
    assert (record["tool"], record["env"], sorted(record["fds"])) == ("sed", [], ["0", "1", "2"]), \
        (sorted(_held(record["env"])), record["fds"])


# psql, on PATH: once the real psql ran the step that creates the scratch database, it tries
# to connect to that database itself, and writes its status and standard error to a file
CONNECTING_STAND_IN = """{head}
import os, re, subprocess, sys
real = {real!r}
if "-0" not in sys.argv:  # not a statement of run_sql
    os.execv(real, [real] + sys.argv[1:])
data = sys.stdin.buffer.read()
status = subprocess.run([real] + sys.argv[1:], input=data).returncode
made = re.search(rb'CREATE DATABASE "(encpipe_restore_[^"]+)"', data)
if made and not os.path.exists({probe!r}):
    tried = subprocess.run([real, "-X", "-w", "-d", made.group(1).decode(), "-c", "SELECT 1"], capture_output=True)
    with open({probe!r}, "wb") as f:
        f.write(b"%d " % tried.returncode + tried.stderr)
sys.exit(status)
"""


def test_no_one_can_connect_to_the_scratch_database_before_it_is_made_private(pg, tools, key_file, tmp_path):
    """The scratch database is created with ALLOW_CONNECTIONS false: none connects before private_sql ran."""
    db = ensure_small(pg, "pin_private_source")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--no-globals", "--key-file", key_file)
    folder, probe = tmp_path / "standin", tmp_path / "probe"
    folder.mkdir()
    (folder / "psql").write_text(CONNECTING_STAND_IN.format(head=python_head("-S"), real=pg.bin("psql"),
                                                            probe=str(probe)))
    (folder / "psql").chmod(0o755)
    env = script_env(pg, tools)
    env["PATH"] = os.pathsep.join([str(folder), env["PATH"]])
    pg.dropdb("pin_private_copy")
    try:
        proc = run([RESTORE, "--no-globals", "--key-file", key_file, path, "pin_private_copy"], env)
        assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
        assert dump(pg, "pin_private_copy") == dump(pg, db)
    finally:
        pg.dropdb("pin_private_copy")
    assert re.fullmatch(rb'[1-9][0-9]* .*database "encpipe_restore_[^"]+" is not currently accepting connections\n',
                        probe.read_bytes(), re.S), probe.read_bytes()


def test_an_explicit_sqlstate_verbosity_still_gets_the_hint_on_how_to_see_messages(pg, tools, key_file, tmp_path):
    """-- -v VERBOSITY=sqlstate, psql's errors as quiet as by default: the failure's hint says how to see them."""
    path = tmp_path / "pin_failing.sql.enc"
    path.write_bytes(_encpipe("seal", "--key-file", key_file, data=b"CREATE TABLE t (x integer);\nSELECT 1/0;\n"))
    pg.dropdb("pin_failing_new")
    proc = run([RESTORE, "--no-globals", "--key-file", key_file, str(path), "pin_failing_new", "--",
                "-v", "VERBOSITY=sqlstate"], script_env(pg, tools))
    assert (proc.returncode, proc.stdout) == (1, b""), proc.stderr.decode()
    assert proc.stderr.decode().endswith(
        f"encpipe-restore: error: restoring {path} failed; database pin_failing_new was not created\n"
        "encpipe-restore: hint: psql's errors above are SQLSTATE codes and lines of the dump: its messages may quote "
        "the dump's data; to see them, add -- -v VERBOSITY=default\n"), proc.stderr.decode()
