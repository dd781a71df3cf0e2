"""One backup location, one PostgreSQL cluster: the location's .encpipe-cluster.

Two servers whose databases share a name (two installs of one application, staging
and production) pointed at one --dir or --to made one series: --keep-last on one
counted the other's backups as its own and removed them, the last good one too, all
of them once the other stopped backing up. Now the location names the cluster whose
backups it holds (its system identifier), and a run from another cluster is refused
(73) before anything is dumped, stored or pruned; --new-cluster takes it over (a
restore onto a new server). Real clusters (each its own initdb: a copy of a data
directory keeps its identifier), real rclone against `rclone serve s3`.
"""

import json
import os
import shlex
import shutil
import stat
import sys

import pytest

from pgcluster import PgCluster
from s3server import rclone_word
from test_backup_restore import BACKUP, REPO, ensure_small, make_key, run, script_env

MARKER = ".encpipe-cluster"


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """Two clusters of their own (two initdb's), each with a database `shop`."""
    with PgCluster(own_initdb=True) as a, PgCluster(own_initdb=True) as b:
        for cluster in (a, b):
            ensure_small(cluster, "shop")
        yield a, b


def identifier(cluster):
    return cluster.psql("SELECT system_identifier FROM pg_control_system()", check=True).strip()


def marker_line(cluster):
    return f"encpipe-cluster v1 system_identifier={identifier(cluster)}\n".encode()


def spy_tools(tools, tmp_path):
    """`tools` and a pg_dump that leaves a file named `pg_dump-ran` in tmp_path before it runs the real one."""
    spy = tmp_path / "spy"
    spy.mkdir(exist_ok=True)
    real = shutil.which("pg_dump", path=os.environ["PATH"] + ":/usr/lib/postgresql/15/bin")
    (spy / "pg_dump").write_text(f'#!/bin/sh\n: > "{tmp_path}/pg_dump-ran"\nexec "{real}" "$@"\n')
    (spy / "pg_dump").chmod(0o755)
    (spy / "encpipe").symlink_to(tools / "encpipe")
    return spy


def backup(cluster, tools, where, *options, extra=None):
    target = ["--to", where] if ":" in where else ["--dir", where]
    return run([BACKUP, *target, "--no-globals", *options, "shop"], script_env(cluster, tools, **(extra or {})))


def contents(directory):
    return {n: open(os.path.join(directory, n), "rb").read() for n in sorted(os.listdir(directory))}


def refusal(where, theirs, mine):
    return (f"encpipe-backup: error: backup of shop failed (status 73): {where} holds the backups of PostgreSQL "
            f"cluster {theirs} (its {MARKER}), not of this server's, {mine}; nothing was stored\n"
            "encpipe-backup: hint: give each server a location of its own; if this server is to take it over (a "
            "restore onto a new server), run once with --new-cluster\n").encode()


def test_a_second_cluster_is_refused_before_its_dump_and_prunes_nothing(two, tools, key_file, tmp_path):
    a, b = two
    d, prom = str(tmp_path / "b"), str(tmp_path / "m" / "encpipe.prom")
    os.mkdir(tmp_path / "m")
    for _ in range(2):
        done = backup(a, tools, d, "--key-file", key_file, "--keep-last", "2")
        assert done.returncode == 0, done.stderr
    assert open(os.path.join(d, MARKER), "rb").read() == marker_line(a)
    before = contents(d)
    assert len(before) == 3
    spy = spy_tools(tools, tmp_path)
    done = backup(b, spy, d, "--key-file", key_file, "--keep-last", "1", "--metrics-file", prom)
    assert (done.returncode, done.stdout) == (73, b"")
    assert done.stderr == refusal(d, identifier(a), identifier(b))
    assert not (tmp_path / "pg_dump-ran").exists()  # refused before the dump
    assert contents(d) == before  # nothing stored, nothing pruned, the marker as it was
    assert 'encpipe_backup_last_attempt_success{database="shop"} 0' in open(prom).read()
    # A goes on as before
    done = backup(a, tools, d, "--key-file", key_file, "--keep-last", "2")
    assert done.returncode == 0, done.stderr


def test_on_one_s3_prefix_too(two, tools, key_file, s3, tmp_path):
    a, b = two
    where, extra = f"{s3.location}/shared", s3.env
    for _ in range(2):
        done = backup(a, tools, where, "--key-file", key_file, "--keep-last", "2", extra=extra)
        assert done.returncode == 0, done.stderr
    prefix = os.path.join(s3.bucket_dir, "shared")
    assert open(os.path.join(prefix, MARKER), "rb").read() == marker_line(a)
    before = contents(prefix)
    done = backup(b, tools, where, "--key-file", key_file, "--keep-last", "1", extra=extra)
    assert (done.returncode, done.stdout) == (73, b"")
    assert done.stderr == refusal(where, identifier(a), identifier(b))
    assert contents(prefix) == before
    # taken over on purpose: B's marker, A's backups left to B's retention from now on
    done = backup(b, tools, where, "--key-file", key_file, "--new-cluster", extra=extra)
    assert done.returncode == 0, done.stderr
    assert open(os.path.join(prefix, MARKER), "rb").read() == marker_line(b)
    assert [n for n in s3.objects("shared") if n.startswith(".encpipe-tmp")] == []


def test_new_cluster_takes_a_directory_over(two, tools, key_file, tmp_path):
    a, b = two
    d = str(tmp_path / "b")
    assert backup(a, tools, d, "--key-file", key_file).returncode == 0
    kept = set(os.listdir(d))
    done = backup(b, tools, d, "--key-file", key_file, "--new-cluster")
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    assert open(os.path.join(d, MARKER), "rb").read() == marker_line(b)
    assert kept - {MARKER} < set(os.listdir(d))  # A's backup still there
    done = backup(a, tools, d, "--key-file", key_file)
    assert done.returncode == 73 and done.stderr == refusal(d, identifier(b), identifier(a))
    done = backup(b, tools, d, "--key-file", key_file, "--new-cluster")  # already B's: nothing to take over
    assert (done.returncode, done.stderr) == (0, b"")


def test_a_take_over_that_stores_nothing_leaves_the_old_marker(two, tools, key_file, tmp_path):
    """--new-cluster whose backup is then not stored (its rename refused: a directory
    planted under the dump's name): the location is still A's, as the run found it.
    Before, B's marker had replaced A's already: nothing stored, said the run, yet A's
    next run was refused, the location given to a cluster that holds no backup there."""
    a, b = two
    d = str(tmp_path / "b")
    assert backup(a, tools, d, "--key-file", key_file).returncode == 0
    plant = '[ "$1" = renaming ] && case "$4" in *.globals.sql.enc) ;; *.enc) mkdir "$2/$4" ;; esac; true'
    done = backup(b, tools, d, "--key-file", key_file, "--new-cluster", extra={"ENCPIPE_TEST_HOOK": plant})
    assert (done.returncode, done.stdout) == (74, b"")
    assert done.stderr.decode().endswith("; nothing was stored\n") and done.stderr.count(b"\n") == 1, done.stderr
    assert open(os.path.join(d, MARKER), "rb").read() == marker_line(a)
    assert backup(a, tools, d, "--key-file", key_file).returncode == 0


def test_an_old_location_without_a_marker_is_adopted(two, tools, key_file, tmp_path):
    a, _ = two
    d = str(tmp_path / "b")
    assert backup(a, tools, d, "--key-file", key_file).returncode == 0
    os.unlink(os.path.join(d, MARKER))  # as a location an earlier version wrote
    done = backup(a, tools, d, "--key-file", key_file)
    assert (done.returncode, done.stderr) == (0, b"")
    assert open(os.path.join(d, MARKER), "rb").read() == marker_line(a)
    assert os.stat(os.path.join(d, MARKER)).st_mode & 0o777 == 0o600


def test_a_failed_run_writes_no_marker(two, tools, key_file, tmp_path):
    a, _ = two
    d = tmp_path / "b"
    # pg_dump fails (after DBNAME: before, the options came first, and pg_dump's was refused, 64, never run)
    done = run([BACKUP, "--dir", d, "--no-globals", "--key-file", key_file, "shop", "--", "--role=nonesuch"],
               script_env(a, tools))
    assert done.returncode != 0 and not d.exists()  # the directory it made removed: empty
    assert b"pg_dump exited with status 1" in done.stderr, done.stderr  # a run that started, not a refusal


@pytest.mark.parametrize("content, why", [
    (b"encpipe-cluster v1 system_identifier=12x\n", "is not a cluster marker (not one line 'encpipe-cluster v1 "
                                                     "system_identifier=N')"),
    (b"", "is not a cluster marker (not one line 'encpipe-cluster v1 system_identifier=N')"),
    (b"encpipe-cluster v1 system_identifier=1\n" * 10, "is not a cluster marker (over 256 bytes)"),
], ids=["garbled", "empty", "too-large"])
def test_a_marker_that_is_not_one_is_refused(two, tools, key_file, tmp_path, content, why):
    a, _ = two
    d = tmp_path / "b"
    d.mkdir(mode=0o700)
    (d / MARKER).write_bytes(content)
    done = backup(a, tools, str(d), "--key-file", key_file)
    assert (done.returncode, done.stdout) == (73, b"")
    assert done.stderr.decode().splitlines()[0] == (
        f"encpipe-backup: error: backup of shop failed (status 73): {d}/{MARKER} {why}; nothing was stored")
    assert os.listdir(d) == [MARKER]
    done = backup(a, tools, str(d), "--key-file", key_file, "--new-cluster")  # the operator's word
    assert done.returncode == 0 and (d / MARKER).read_bytes() == marker_line(a)


KEPT_HINT = ("encpipe-backup: hint: see whose backups the location holds (encpipe-list); move what is under that "
             "name out of the way: --new-cluster replaces a file or a link, never this")


def test_a_marker_that_is_a_link_is_refused(two, tools, key_file, tmp_path):
    a, _ = two
    d = tmp_path / "b"
    d.mkdir(mode=0o700)
    (tmp_path / "elsewhere").write_bytes(marker_line(a))
    (d / MARKER).symlink_to(tmp_path / "elsewhere")
    done = backup(a, tools, str(d), "--key-file", key_file)
    assert (done.returncode, done.stdout) == (73, b"")
    assert f"{d}/{MARKER} cannot be read as a cluster marker: a symbolic link;" in done.stderr.decode()
    (tmp_path / "elsewhere").write_bytes(b"not mine\n")
    done = backup(a, tools, str(d), "--key-file", key_file, "--new-cluster")  # the link replaced, not its target
    assert (done.returncode, done.stderr) == (0, b"")
    assert not os.path.islink(d / MARKER) and (d / MARKER).read_bytes() == marker_line(a)
    assert (tmp_path / "elsewhere").read_bytes() == b"not mine\n"


@pytest.mark.parametrize("planted", ["directory", "link-to-directory", "fifo"])
def test_a_directory_under_the_markers_name_is_refused(two, tools, key_file, tmp_path, planted):
    """Not a regular file, as a FIFO: refused (73). Before, the listing (which leaves
    directories out) showed no marker: the run went on unguarded, its own marker's rename
    refused with a warning, every run, a location any cluster could back up into. With
    --new-cluster the backup is stored and what is there left as it is (never removed),
    a warning said why (of a FIFO, before: `changed while pruning; left in place`)."""
    a, _ = two
    d = tmp_path / "b"
    d.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x").write_bytes(b"x")
    if planted == "directory":
        (d / MARKER).mkdir()
        (d / MARKER / "x").write_bytes(b"x")
    elif planted == "fifo":
        os.mkfifo(d / MARKER)
    else:
        (d / MARKER).symlink_to(elsewhere)
    done = backup(a, tools, str(d), "--key-file", key_file)
    assert (done.returncode, done.stdout) == (73, b"")
    assert done.stderr.decode().splitlines() == [
        f"encpipe-backup: error: backup of shop failed (status 73): {d}/{MARKER} cannot be read as a cluster "
        "marker: not a regular file; nothing was stored", KEPT_HINT]  # before, the hint offered --new-cluster
    assert os.listdir(d) == [MARKER]
    done = backup(a, tools, str(d), "--key-file", key_file, "--new-cluster")
    assert done.returncode == 0 and json.loads(done.stdout)["filename"] in os.listdir(d)
    assert done.stderr.decode() == (f"encpipe-backup: warning: {MARKER} not written: {d}/{MARKER} cannot be read "
                                    "as a cluster marker: not a regular file\n")
    assert os.listdir(elsewhere) == ["x"]
    if planted == "fifo":
        assert stat.S_ISFIFO(os.lstat(d / MARKER).st_mode)
    else:
        assert os.path.isdir(d / MARKER) and os.listdir(d / MARKER) == ["x"]


@pytest.mark.skipif(os.geteuid() != 0, reason="another user's marker: root chowns it")
def test_a_marker_owned_by_another_user_is_refused(two, tools, key_file, tmp_path):
    a, _ = two
    d = tmp_path / "b"
    d.mkdir(mode=0o755)
    (d / MARKER).write_bytes(marker_line(a))
    os.chown(d / MARKER, 54321, 54321)
    done = backup(a, tools, str(d), "--key-file", key_file)
    assert (done.returncode, done.stdout) == (73, b"")
    assert done.stderr.decode().splitlines()[0] == (
        f"encpipe-backup: error: backup of shop failed (status 73): {d}/{MARKER} is owned by uid 54321, not the "
        "caller, root or the directory's owner: not taken as this location's cluster marker; nothing was stored")
    assert os.listdir(d) == [MARKER]
    os.chown(d, 54321, 54321)  # the directory's owner's: taken at its word
    assert backup(a, tools, str(d), "--key-file", key_file, "--allow-shared-dir").returncode == 0


def test_a_backup_role_that_is_no_superuser_reads_the_identifier(two, tools, key_file, tmp_path):
    a, b = two
    a.psql("DROP ROLE IF EXISTS bk; CREATE ROLE bk LOGIN; GRANT pg_read_all_data TO bk;")
    d = tmp_path / "b"
    d.mkdir(mode=0o700)
    (d / MARKER).write_bytes(marker_line(b))
    done = backup(a, tools, str(d), "--key-file", key_file, extra={"PGUSER": "bk"})
    assert done.returncode == 73 and done.stderr == refusal(d, identifier(b), identifier(a))
    (d / MARKER).write_bytes(marker_line(a))
    done = backup(a, tools, str(d), "--key-file", key_file, extra={"PGUSER": "bk"})
    assert (done.returncode, done.stderr) == (0, b"")


def test_an_identifier_that_cannot_be_read_is_a_warning_and_the_backup_is_made(two, tools, key_file, tmp_path):
    a, b = two
    spy = tmp_path / "nopsql"
    spy.mkdir()
    (spy / "psql").write_text('#!/bin/sh\necho "psql: error: connection refused" >&2\nexit 2\n')
    (spy / "psql").chmod(0o755)
    (spy / "encpipe").symlink_to(tools / "encpipe")
    d = tmp_path / "b"
    d.mkdir(mode=0o700)
    (d / MARKER).write_bytes(marker_line(b))
    done = backup(a, spy, str(d), "--key-file", key_file)
    assert done.returncode == 0, done.stderr
    assert done.stderr == (b"encpipe-backup: warning: cannot read the cluster's system identifier (psql: error: "
                           b"connection refused); the location's .encpipe-cluster not checked\n")
    assert json.loads(done.stdout)["filename"] in os.listdir(d)
    assert (d / MARKER).read_bytes() == marker_line(b)  # not written either


def tool(name, *argv, env):
    return run([sys.executable, REPO / "scripts" / name, *argv], env)


def test_list_verify_check_and_prune_leave_the_marker_alone(two, tools, key_file, tmp_path):
    a, _ = two
    d = str(tmp_path / "b")
    for _ in range(2):
        assert backup(a, tools, d, "--key-file", key_file).returncode == 0
    env = script_env(a, tools)
    listed = tool("encpipe-list", "--stats", d, env=env)
    assert listed.returncode == 0
    report = json.loads(listed.stdout)
    marker = [e for e in report["backups"] if e["filename"] == MARKER]
    assert [(e["status"], e["sealed"], e["database"]) for e in marker] == [("marker", False, None)]
    assert report["stats"]["backups"] == 2 and report["stats"]["by_status"] == {"marker": 1, "sealed": 2}
    verified = tool("encpipe-verify", "--key-file", key_file, "--dir", d, env=env)
    assert verified.returncode == 0, verified.stderr
    assert [r["ok"] for r in json.loads(verified.stdout)["results"]] == [True, True]  # the marker left out
    named = tool("encpipe-verify", "--key-file", key_file, os.path.join(d, MARKER), env=env)
    assert named.returncode == 65 and json.loads(named.stdout)["results"][0]["error"] == "not an encpipe file"
    checked = tool("encpipe-check", "--max-age", "24", d, env=env)
    assert checked.returncode == 0 and checked.stdout.startswith(b"OK: shop:"), checked.stdout
    pruned = tool("encpipe-prune", "--key-file", key_file, "--keep-last", "1", d, env=env)
    assert pruned.returncode == 0, pruned.stderr
    assert len(json.loads(pruned.stdout)["removed"]) == 1
    assert open(os.path.join(d, MARKER), "rb").read() == marker_line(a)
    # rotate: a hidden file, "ignored" (README said `foreign`); migrate: not a *.sql.enc name, not looked at
    new_key = make_key(tmp_path / "new.key")
    rotated = tool("encpipe-rotate", "--old-key-file", key_file, "--new-key-file", new_key, d, env=env)
    assert rotated.returncode == 0, rotated.stderr
    lines = [json.loads(line) for line in rotated.stdout.splitlines()]
    assert [e for e in lines if e["file"].endswith(MARKER)] == [
        {"file": os.path.join(d, MARKER), "status": "ignored", "reason": "hidden file"}]
    assert [e["status"] for e in lines if not e["file"].endswith(MARKER)] == ["rotated"]
    migrated = tool("encpipe-migrate", "--legacy-key-file", key_file, "--key-file", new_key, d, env=env)
    assert (migrated.returncode, migrated.stdout, migrated.stderr) == (0, b"", b"")
    assert open(os.path.join(d, MARKER), "rb").read() == marker_line(a)
    # a location holding the marker and no backup is one that holds no backup
    for name in os.listdir(d):
        if name != MARKER:
            os.unlink(os.path.join(d, name))
    assert tool("encpipe-verify", "--key-file", key_file, "--dir", d, env=env).returncode == 66
    assert tool("encpipe-prune", "--key-file", key_file, "--keep-last", "1", d, env=env).returncode == 66


def test_a_unit_that_would_take_the_location_over_every_night_is_refused(tmp_path):
    done = run([BACKUP, "--systemd-unit", "--dir", tmp_path / "b", "--new-cluster", "shop"], dict(os.environ))
    assert (done.returncode, done.stdout) == (64, b"")
    assert done.stderr == (b"encpipe-backup: error: --new-cluster is for one run, not for a unit: each of its runs "
                           b"would take the location over\nencpipe-backup: hint: run encpipe-backup --new-cluster "
                           b"once by hand, and make the unit without it\n")


def test_a_remote_not_listed_for_its_marker_is_a_warning_and_the_backup_is_made(two, tools, key_file, s3, tmp_path):
    """The first listing (the marker's) fails, the later ones (the rename's) do not: the
    backup is stored, unguarded, and says so; it writes no marker it has not looked for."""
    from s3server import rclone_binary

    a, _ = two
    wrapper = tmp_path / "rclone"
    wrapper.write_text(f'#!/bin/sh\nif [ "$1" = lsjson ] && [ ! -e "{tmp_path}/listed" ]; then\n'
                       f'  : > "{tmp_path}/listed"; echo "lsjson: connection reset" >&2; exit 1\nfi\n'
                       f'exec "{rclone_binary()}" "$@"\n')
    wrapper.chmod(0o755)
    where = f"{s3.location}/unlisted"
    done = backup(a, tools, where, "--key-file", key_file, extra={**s3.env, "RCLONE": str(wrapper)})
    assert done.returncode == 0, done.stderr
    assert done.stderr == (f"encpipe-backup: warning: {MARKER} not checked: cannot list {where}: rclone lsjson: "
                           "lsjson: connection reset\n").encode()
    assert s3.objects("unlisted") == [json.loads(done.stdout)["filename"]]


def test_a_marker_that_comes_while_the_backup_is_made_refuses_its_store(two, tools, key_file, tmp_path):
    """No marker when the run began; another cluster's there when it writes its own (a
    remote's runs do not take turns): refused then, 73, nothing stored, that marker kept."""
    a, b = two
    d = tmp_path / "b"
    theirs = tmp_path / "theirs"
    theirs.write_bytes(marker_line(b))
    hook = f'[ "$1" = created ] && [ "$4" = {MARKER} ] && cp "{theirs}" "$2/{MARKER}"; true'
    done = backup(a, tools, str(d), "--key-file", key_file, extra={"ENCPIPE_TEST_HOOK": hook})
    assert (done.returncode, done.stdout) == (73, b"")
    assert done.stderr == refusal(d, identifier(b), identifier(a))
    assert os.listdir(d) == [MARKER] and (d / MARKER).read_bytes() == marker_line(b)


def test_a_remote_refused_at_its_marker_takes_back_the_one_written_in_dir(two, tools, key_file, s3, tmp_path):
    """--dir and --to, neither with a marker; another cluster's comes on the remote once
    DIR's is renamed: refused (73), nothing stored, and DIR's marker taken back (before,
    it stayed: the DIR this run made, holding only a marker, was left too)."""
    a, b = two
    d, remote = tmp_path / "b", f"{s3.location}/both"
    theirs = tmp_path / "theirs"
    theirs.write_bytes(marker_line(b))
    config = " ".join(f"{name}={shlex.quote(value)}" for name, value in s3.env.items())
    hook = (f'[ "$1" = renamed ] && [ "$4" = {MARKER} ] && {config} {rclone_word()} rcat "{remote}/{MARKER}" '
            f'< "{theirs}"; true')
    done = run([BACKUP, "--dir", d, "--to", remote, "--no-globals", "--key-file", key_file, "shop"],
               script_env(a, tools, **s3.env, ENCPIPE_TEST_HOOK=hook))
    assert (done.returncode, done.stdout) == (73, b"")
    assert done.stderr == refusal(remote, identifier(b), identifier(a))
    assert s3.objects("both") == [MARKER] and not d.exists()
