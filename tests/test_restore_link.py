"""encpipe-restore of a link to a run's dump (`latest.dump.enc` pointing at the
newest run's, as an operator keeps one): restored with that run's globals file,
found beside the link's final target, as if the target had been given.

Before, the run was told from FILE's name only: a link named otherwise was
restored with a warning and no globals file, so onto an empty server without
the run's roles, its owner and its privileges (PUBLIC could connect). Now the
name the run is found by is that of the file the restore opened, read back
from its descriptor, never from a second resolution of the link: a writer of
the directory who repoints the link meanwhile gets the dump and the globals
file of one run, the one opened. A file given as /dev/fd/N (or /dev/stdin)
whose descriptor is a run's dump is taken the same way, by the name read back
from it; a file under a name that is not a run's, or a descriptor of a file
that has none (removed), is restored as before, with the warning. Real
scripts, real clusters.
"""

import os
import shlex
import shutil
import subprocess
import sys

import pytest

from encpipe import pgfetch
from encpipe.pgcli import Failure
from pgcluster import PgCluster
from test_backup_restore import RESTORE, backup, dump, leftover_databases, restore, run, script_env

SOURCE, TARGET = "sl_shop", "sl_target"
PROPS = "SELECT pg_get_userbyid(datdba), datacl FROM pg_database WHERE datname = '%s'"
OURS = "SELECT rolname FROM pg_roles WHERE rolname LIKE 'sl\\_%' ORDER BY 1"
HINT = ("encpipe-restore: hint: a backup made with encpipe-backup --no-globals has none: restore it with --no-globals "
        "(no roles, no recorded database properties); else give the right one with --globals FILE")
NO_GLOBALS = (f"encpipe-restore: warning: no database properties (no globals file): {TARGET} will belong to the "
              "restoring role, with default privileges")


def _globals_of(path):
    return path[: -len(".dump.enc")] + ".globals.sql.enc"


@pytest.fixture(scope="module")
def runs(pg, tools, key_file, tmp_path_factory):
    """(directory, run A's dump, run B's dump, what a restore of each gives): A's database is owned by
    sl_owner_a, which only sl_reader_a may connect to; by B's, sl_owner_b owns it, sl_owner_a and
    sl_reader_a are gone, and PUBLIC may connect. Custom archives, each with its globals file."""
    pg.psql("DROP ROLE IF EXISTS sl_owner_a; DROP ROLE IF EXISTS sl_reader_a; DROP ROLE IF EXISTS sl_owner_b;")
    pg.dropdb(SOURCE)
    pg.psql("CREATE ROLE sl_owner_a; CREATE ROLE sl_reader_a;")
    pg.psql(f"CREATE DATABASE {SOURCE} OWNER sl_owner_a; REVOKE CONNECT ON DATABASE {SOURCE} FROM PUBLIC; "
            f"GRANT CONNECT ON DATABASE {SOURCE} TO sl_reader_a;")
    pg.psql("CREATE TABLE t (v text); INSERT INTO t VALUES ('run A');", db=SOURCE)
    directory = str(tmp_path_factory.mktemp("restore_link") / "b")
    options = ("--format", "custom", "--key-file", key_file)
    a, _ = backup(pg, tools, directory, SOURCE, *options)
    made_a = (pg.psql(PROPS % SOURCE), "sl_owner_a\nsl_reader_a\n", "run A\n")
    pg.psql(f"CREATE ROLE sl_owner_b; ALTER DATABASE {SOURCE} OWNER TO sl_owner_b; "
            f"REVOKE ALL ON DATABASE {SOURCE} FROM sl_reader_a; GRANT CONNECT ON DATABASE {SOURCE} TO PUBLIC; "
            "DROP ROLE sl_reader_a; DROP ROLE sl_owner_a;")
    pg.psql("UPDATE t SET v = 'run B';", db=SOURCE)
    b, _ = backup(pg, tools, directory, SOURCE, *options)
    made_b = (pg.psql(PROPS % SOURCE), "sl_owner_b\n", "run B\n")
    assert made_a[0].startswith("sl_owner_a|") and made_b[0].startswith("sl_owner_b|")
    assert os.path.exists(_globals_of(a)) and os.path.exists(_globals_of(b))
    yield directory, a, b, {a: made_a, b: made_b}
    for db in (SOURCE, TARGET):
        pg.dropdb(db)
    pg.psql("DROP ROLE IF EXISTS sl_owner_b;")


@pytest.fixture
def empty(empty_cluster):
    """A server that has none of the runs' roles, nor their database."""
    return empty_cluster


def _restored(cluster):
    """What a restore into TARGET gave: its owner and privileges, the runs' roles, its rows."""
    return cluster.psql(PROPS % TARGET), cluster.psql(OURS), cluster.psql("SELECT v FROM t", db=TARGET)


def _state(cluster):
    return cluster.psql("SELECT datname FROM pg_database ORDER BY 1"), cluster.psql("SELECT rolname FROM pg_roles "
                                                                                     "ORDER BY 1")


def _link(link, target):
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(target, link)
    return link


@pytest.mark.parametrize("kind", ["relative, beside it", "absolute", "a chain into another directory"])
def test_a_link_to_a_runs_dump_restores_onto_an_empty_server_with_the_runs_roles_and_owner(runs, empty, tools,
                                                                                          key_file, tmp_path, kind):
    """Before: 0, with "no database properties (no globals file)": TARGET belonged to the
    restoring role, PUBLIC could connect, and neither sl_owner_a nor sl_reader_a existed."""
    directory, a, _, made = runs
    name = os.path.basename(a)
    if kind == "relative, beside it":
        link = _link(os.path.join(directory, "latest.dump.enc"), name)
    elif kind == "absolute":
        link = _link(str(tmp_path / "latest.sql.enc"), a)
    else:  # links/latest -> step -> ../b/NAME, each relative
        shutil.copytree(directory, tmp_path / "b")
        _link(str(tmp_path / "links" / "step"), os.path.join("..", "b", name))
        link = _link(str(tmp_path / "links" / "latest"), "step")
    try:
        proc = restore(empty, tools, link, TARGET, "--key-file", key_file)
    finally:
        if kind == "relative, beside it":
            os.unlink(link)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    lines = proc.stderr.decode().splitlines()
    assert lines[-1] == f"encpipe-restore: restored {link} into new database {TARGET}", lines
    assert not [line for line in lines if "warning" in line], lines
    assert _restored(empty) == made[a]
    assert leftover_databases(empty) == set()


def test_a_link_restores_as_its_target_does(runs, empty, tools, key_file):
    """The same database, roles and privileges, and the same lines but for FILE's name."""
    directory, _, b, _ = runs
    link = _link(os.path.join(directory, "newest.dump.enc"), os.path.basename(b))
    try:
        by_link = restore(empty, tools, link, TARGET, "--key-file", key_file)
    finally:
        os.unlink(link)
    assert (by_link.returncode, by_link.stdout) == (0, b""), by_link.stderr.decode()
    with PgCluster() as other:
        by_target = restore(other, tools, b, TARGET, "--key-file", key_file)
        assert (by_target.returncode, by_target.stdout) == (0, b""), by_target.stderr.decode()
        assert (_restored(other), dump(other, TARGET)) == (_restored(empty), dump(empty, TARGET))
    assert by_link.stderr.replace(link.encode(), b"FILE") == by_target.stderr.replace(b.encode(), b"FILE")


def test_a_links_options_for_the_restoring_tool_are_checked_as_its_targets(runs, empty, tools, key_file, tmp_path):
    """`-- -t t` is a pg_restore option (a custom archive's), no psql one: checked by the
    target's name, as when the target is given. Before: refused by the link's name (64,
    `psql argument t is not an option`), before the link was opened."""
    _, a, _, made = runs
    link = _link(str(tmp_path / "latest.sql.enc"), a)
    proc = run([RESTORE, "--key-file", key_file, link, TARGET, "--", "-t", "t"], script_env(empty, tools))
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert _restored(empty) == made[a]


def test_a_link_whose_targets_globals_file_is_missing_is_refused(runs, empty, tools, key_file, tmp_path):
    """As when the target is given: 66, nothing on standard output, before any server is
    reached; a live database is untouched, no role created. Before: restored with the warning."""
    _, a, _, _ = runs
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    target = str(dumps / os.path.basename(a))
    os.link(a, target)  # without its globals file
    link = _link(str(tmp_path / "links" / "latest.dump.enc"), os.path.join("..", "dumps", os.path.basename(a)))
    error = (f"encpipe-restore: error: the globals file of FILE's run is missing: "
             f"{_globals_of(os.path.realpath(target))}; nothing was changed")
    for live in (False, True):
        if live:
            empty.psql(f"CREATE DATABASE {TARGET}; COMMENT ON DATABASE {TARGET} IS 'live';")
            empty.psql("CREATE TABLE t (v text); INSERT INTO t VALUES ('live');", db=TARGET)
        before = _state(empty), live and dump(empty, TARGET)
        proc = restore(empty, tools, link, TARGET, "--key-file", key_file, *(["--drop-old"] if live else []))
        assert (proc.returncode, proc.stdout) == (66, b""), proc.stderr.decode()
        assert proc.stderr.decode().splitlines() == [error, HINT]
        assert (_state(empty), live and dump(empty, TARGET)) == before
        assert empty.psql(OURS) == ""


SWAPPER = """#!/bin/sh
# encpipe, after pointing $SWAP_LINK at $SWAP_TO the first time it runs $SWAP_AT
# (keyid: beside FILE's opening; other: after it)
case "$1" in keyid) at=keyid ;; *) at=other ;; esac
if [ "$at" = "$SWAP_AT" ] && [ ! -e "$SWAP_DONE" ]; then
    : >"$SWAP_DONE"
    ln -sfn "$SWAP_TO" "$SWAP_LINK"
fi
exec %s -m encpipe "$@"
"""


@pytest.mark.parametrize("at", ["other", "keyid"])
def test_a_link_repointed_during_the_restore_pairs_no_dump_with_another_runs_globals(runs, empty, tools, key_file,
                                                                                      tmp_path, at):
    """`latest` points at run A's dump, and is pointed at run B's while the restore runs:
    after FILE was opened, A is restored with A's globals file; while `encpipe keyid`
    checks the key file (beside FILE's opening: before or after it), A with A's or B
    with B's. Never a dump with the other run's owner, privileges or roles. Before:
    either way restored without any globals file."""
    directory, a, b, made = runs
    link = _link(str(tmp_path / "links" / "latest"), a)
    wrapper, done = tmp_path / "encpipe-swapping", tmp_path / "swapped"
    wrapper.write_text(SWAPPER % shlex.quote(sys.executable))
    wrapper.chmod(0o755)
    proc = restore(empty, tools, link, TARGET, "--key-file", key_file,
                   env_extra={"ENCPIPE": str(wrapper), "SWAP_LINK": link, "SWAP_TO": b, "SWAP_AT": at,
                              "SWAP_DONE": str(done)})
    assert done.exists() and os.readlink(link) == b
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert _restored(empty) in ([made[a]] if at == "other" else [made[a], made[b]])
    assert leftover_databases(empty) == set()


def test_a_link_to_a_globals_file_is_refused_as_the_globals_file_is(runs, empty, tools, key_file, tmp_path):
    """64 before anything is read, as for the globals file given. Before: opened and
    refused as a cluster's dump under a dump's name (65)."""
    _, a, _, _ = runs
    link = _link(str(tmp_path / "latest.sql.enc"), _globals_of(a))
    before = _state(empty)
    proc = restore(empty, tools, link, TARGET, "--key-file", key_file)
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [
        f"encpipe-restore: error: {link} is a globals file: restore the dump of its run, which applies it",
        "encpipe-restore: hint: see encpipe-restore --help"]
    assert _state(empty) == before


@pytest.mark.parametrize("given", ["/dev/fd/N of a removed run's dump", "another name"])
def test_an_unnamed_descriptor_or_a_file_under_another_name_is_restored_as_before_without_globals(
        runs, pg, tools, key_file, tmp_path, given):
    """Unchanged: /dev/fd/N of a run's dump removed once opened (it has no name to find its
    run by), and a copy of one under a name that is not a run's (beside the run's globals
    file), restore with the warning and no globals file."""
    directory, _, b, _ = runs
    pg.dropdb(TARGET)
    if given.startswith("/dev/fd/N"):
        removed = os.path.join(directory, "removed_" + os.path.basename(b))
        os.link(b, removed)
        fd = os.open(removed, os.O_RDONLY)
        os.unlink(removed)
        path, fds = f"/dev/fd/{fd}", (fd,)
    else:
        path, fds = os.path.join(directory, "copy.dump.enc"), ()
        os.link(b, path)
    try:
        proc = run([RESTORE, "--key-file", key_file, path, TARGET], script_env(pg, tools), pass_fds=fds,
                   stdin=subprocess.DEVNULL)
    finally:
        for fd in fds:
            os.close(fd)
        if not fds:
            os.unlink(path)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [NO_GLOBALS,
                                                 f"encpipe-restore: restored {path} into new database {TARGET}"]
    assert pg.psql(PROPS % TARGET).startswith(pg.user + "|")
    assert pg.psql("SELECT v FROM t", db=TARGET) == "run B\n"
    pg.dropdb(TARGET)


def _descriptor_restore(cluster, tools, key_file, dump_, given, *extra):
    """encpipe-restore of `dump_` given as `given` (/dev/fd/N, /dev/stdin): (the restore, FILE as given)."""
    fd = os.open(dump_, os.O_RDONLY)
    try:
        path = "/dev/stdin" if given == "/dev/stdin" else f"/dev/fd/{fd}"
        return run([RESTORE, "--key-file", key_file, path, TARGET, *extra], script_env(cluster, tools),
                   pass_fds=(fd,), stdin=fd if given == "/dev/stdin" else subprocess.DEVNULL), path
    finally:
        os.close(fd)


@pytest.mark.parametrize("given", ["/dev/fd/N", "/dev/stdin"])
def test_a_descriptor_of_a_runs_dump_restores_onto_an_empty_server_with_the_runs_roles_and_owner(runs, empty, tools,
                                                                                                key_file, given):
    """As the file by its name: with its run's globals file, no warning. Before: 0, with "no
    database properties (no globals file)": TARGET belonged to the restoring role, PUBLIC
    could connect, and neither sl_owner_a nor sl_reader_a existed."""
    _, a, _, made = runs
    proc, path = _descriptor_restore(empty, tools, key_file, a, given)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    # the run's globals hold every role of the shared server then (other tests' too): ours among them
    created, restored = proc.stderr.decode().splitlines()
    assert created.startswith("encpipe-restore: created roles: ") and \
        {"sl_owner_a", "sl_reader_a"} <= set(created.split(": ", 2)[2].split(", ")), created
    assert restored == f"encpipe-restore: restored {path} into new database {TARGET}"
    assert _restored(empty) == made[a]
    assert leftover_databases(empty) == set()


def test_a_descriptors_options_for_the_restoring_tool_are_checked_as_its_files(runs, empty, tools, key_file):
    """`-- -t t` (pg_restore's, a custom archive's) is checked by the name of the file behind
    /dev/fd/N, as for that file given. Before: refused by /dev/fd/N's (64, a psql one's)."""
    _, a, _, made = runs
    proc, _ = _descriptor_restore(empty, tools, key_file, a, "/dev/fd/N", "--", "-t", "t")
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()
    assert _restored(empty) == made[a]


def test_a_descriptor_of_a_dump_whose_runs_globals_file_is_missing_is_refused(runs, empty, tools, key_file,
                                                                             tmp_path):
    """As the file by its name: 66, naming the globals file beside it, before any server is
    reached. Before: restored with the warning and no globals file."""
    _, a, _, _ = runs
    target = str(tmp_path / os.path.basename(a))
    os.link(a, target)  # without its globals file
    before = _state(empty)
    proc, _ = _descriptor_restore(empty, tools, key_file, target, "/dev/fd/N")
    assert (proc.returncode, proc.stdout) == (66, b""), proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [
        f"encpipe-restore: error: the globals file of FILE's run is missing: {_globals_of(target)}; nothing "
        "was changed", HINT]
    assert _state(empty) == before


# --- the name the run is found by (pgfetch.open_named), without a server --------------------------------


def _named(path):
    fd, name = pgfetch.open_named(str(path), "FILE", "nothing was changed")
    os.close(fd)
    return name


def test_the_name_is_the_final_targets_for_a_link_and_as_given_otherwise(tmp_path, monkeypatch):
    dump_ = tmp_path / "b" / "shop_20260101T000000Z.dump.enc"
    dump_.parent.mkdir()
    dump_.write_bytes(b"ENCPIPE")
    link = _link(str(tmp_path / "l" / "latest"), "step")
    _link(str(tmp_path / "l" / "step"), os.path.join("..", "b", dump_.name))
    assert _named(link) == str(dump_)
    assert _named(dump_) == str(dump_)
    monkeypatch.chdir(tmp_path / "l")
    assert _named("latest") == str(dump_)
    assert _named(os.path.join("..", "b", dump_.name)) == os.path.join("..", "b", dump_.name)
    other = tmp_path / "b" / "copy.dump.enc"
    os.link(dump_, other)
    fds = [os.open(dump_, os.O_RDONLY), os.open(other, os.O_RDONLY)]
    try:  # a descriptor's path, or a link to one: the name of a run's dump behind it, else as given
        for fd, name in zip(fds, (str(dump_), None)):
            by_descriptor = _link(str(tmp_path / "l" / f"fd{fd}"), f"/dev/fd/{fd}")
            for path in (f"/dev/fd/{fd}", f"/proc/self/fd/{fd}", by_descriptor):
                assert _named(path) == (name or path)
    finally:
        for fd in fds:
            os.close(fd)


def test_a_descriptors_file_without_the_name_read_back_is_taken_as_given(tmp_path, monkeypatch):
    """A run's dump behind /dev/fd/N removed, or moved (another file under its name), before
    its name is checked: /dev/fd/N as given (no run, the warning), never that name; without
    /proc, as given."""
    dump_ = tmp_path / "shop_20260101T000000Z.dump.enc"
    readlink = os.readlink
    for change in ("removed", "moved", "no /proc"):
        dump_.write_bytes(b"ENCPIPE")
        fd = os.open(dump_, os.O_RDONLY)

        def changed(path, change=change):
            if str(path).startswith("/proc/self/fd/"):
                if change == "no /proc":
                    raise FileNotFoundError(2, "No such file or directory")
                name = readlink(path)
                os.unlink(dump_)
                if change == "moved":
                    dump_.write_bytes(b"ENCPIPE")
                return name
            return readlink(path)

        monkeypatch.setattr(os, "readlink", changed)
        try:
            assert _named(f"/dev/fd/{fd}") == f"/dev/fd/{fd}", change
        finally:
            monkeypatch.setattr(os, "readlink", readlink)
            os.close(fd)


def test_a_link_whose_target_is_removed_once_opened_is_refused(tmp_path, monkeypatch):
    """Its name read back is `NAME (deleted)`: not taken for a file of no run (which needs no
    globals file), but 66. Where there is no /proc to read it back from: the link's own name."""
    dump_ = tmp_path / "shop_20260101T000000Z.dump.enc"
    dump_.write_bytes(b"ENCPIPE")
    link = _link(str(tmp_path / "latest"), dump_.name)
    readlink = os.readlink

    def removed_first(path):
        if str(path).startswith("/proc/self/fd/"):
            os.unlink(dump_)
        return readlink(path)

    monkeypatch.setattr(os, "readlink", removed_first)
    with pytest.raises(Failure) as refused:
        _named(link)
    assert (str(refused.value), refused.value.status) == (
        "cannot read FILE: the file its link leads to was moved or removed while it was opened; nothing was "
        "changed", 66)

    def no_proc(path):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(2, "No such file or directory")
        return readlink(path)

    dump_.write_bytes(b"ENCPIPE")
    monkeypatch.setattr(os, "readlink", no_proc)
    assert _named(link) == link
