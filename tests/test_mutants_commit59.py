"""encpipe-restore's stream (pgstream.Restore.run) and encpipe-backup's commit
(backup/job.py), each decision broken by hand once (mutation review 59b: a close, a
kill or a check dropped, a comparison flipped) with no test failing: the tests that
now see each. Restore.run runs as pgrestore runs it, its children stand-ins: `sh`
prints the stream as `encpipe open` would, a psql and a pg_restore on PATH record
their arguments and standard input (the real zstd and gzip decompress).

- a `pg_restore -f -` that reads on without writing is killed once psql failed, not
  left reading encpipe open's stream to its end (run's kill_running(middle));
- psql or a decompressor gone before the stream's end: the run's source and the pump's
  (_pump's close of src, run's src.close()) are closed, so encpipe open ends, not blocks;
- a decompressor that failed having given nothing is the restore's failure (1), not an
  empty stream; an empty stream is EmptyStream only when encpipe open succeeded;
- only 50..5F then 2A 4D 18 (a skippable frame, any of the 16) is zstd's: a plain dump
  starting with `P`, `S` or a backslash goes to psql;
- the fresh `\\restrict KEY` line comes first only for a psql that restricts (not an older
  psql allowed), the dump's own restrict lines dropped either way; an archive's SQL gets
  it too (quiet);
- psql_failed (QUIET_ARCHIVE's hint) only when psql ran the SQL (not pg_restore -d) and
  ended with a status (not a signal);
- the archive's tools and options: `pg_restore --exit-on-error --single-transaction -f -`
  and psql's `SET default_transaction_read_only = off`; unrestricted, `pg_restore
  --no-password --exit-on-error --single-transaction -d`;
- pg_dumpall's dump under a dump's name is refused when compressed too (the head read on
  past the decompressor's 8 bytes);
- Restore.kill() ends encpipe open too;
- a labelled run's file that gives nothing (empty, or encpipe open refused it) is not
  said to hold no label;
- commit: the globals file renamed first, each store's local copy last; the JSON line's
  path, remote, globals, bytes and key_ids (DIR's dump's as read back, never the globals
  file's or the remote's); the size recorded; stale temporary objects looked for on the
  remote, a failure a warning;
- a failed rename takes back what was renamed, the last first, records the failed run,
  and its status is the rename's; a take-back that fails, or a copy the remote left in
  place (left_in_place), is "not all of it could be taken back";
- a read back that cannot be made: 1, recorded a success; a file that does not read
  back as stored: 1, recorded failed (lost); the line's bytes then none;
- the prune after it, in each store: what each removed in the line; one that found
  problems, or failed (OSError), said and 1, the other pruned all the same; any other
  exception (a bug's) not said as "not pruned";
- the JSON line's output: its reader gone 141, nothing said; another error 74 saying the
  backup is stored; a metrics file the system cannot write (OSError): said, 1.
"""

import errno
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import threading
import sys
from types import SimpleNamespace

import pytest

from encpipe import pgstream
from encpipe.backup import job, metrics
from encpipe.errors import IOFailure
from encpipe.pgcli import Failure


def _script(path, body):
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def _stream(tmp_path, monkeypatch, data, *, psql="cat > \"$OUT/psql.in\"", pg_restore="cat", opened=0,
            restrict=True, wait=20, again=False, named=None):
    """Restore.run of `data` (what encpipe open prints, then exits `opened`) with stand-ins
    for psql and pg_restore (sh bodies; $OUT is tmp_path); (its result or the exception it
    raised, the Restore, the kind create() was given); `again`: encpipe open prints
    `data` over and over until its reader is gone; `named`: (file, database, time) of
    a backup whose run's globals file is labelled. A run not ended within `wait` s fails
    the test, its children killed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("psql", psql), ("pg_restore", pg_restore)):
        _script(bin_dir / name, f'echo "$@" > "$OUT/{name}.args"\n{body}')
    (tmp_path / "stream").write_bytes(data)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("OUT", str(tmp_path))
    opener = f'while cat "{tmp_path}/stream"; do :; done' if again else f'cat "{tmp_path}/stream"; exit {opened}'
    restore = pgstream.Restore(["sh", "-c", opener], None, (), (), None,
                               restrict, lambda cmd, start, **kw: start(cmd, **kw), named)
    restore.labelled = named is not None
    kinds, got = [], []

    def run():
        try:
            got.append(restore.run(lambda kind: kinds.append(kind) or "db"))
        except BaseException as e:  # noqa: B036 - handed to the test
            got.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(wait)
    if thread.is_alive():
        for proc in restore.procs:
            proc.kill()
        thread.join(10)
        pytest.fail(f"Restore.run did not end within {wait} s")
    return got[0], restore, kinds


def _out(tmp_path, name):
    path = tmp_path / name
    return path.read_bytes() if path.exists() else None



BIG = 8 << 20  # past every pipe's buffer (1 MiB each, widen_pipes)


def test_a_pg_restore_reading_on_without_writing_is_killed_once_psql_failed(tmp_path, monkeypatch):
    """psql failed: `pg_restore -f -`, which may read on for long without writing (the
    data of tables -t left out), is killed (run: kill_running(middle)), not left reading
    encpipe open's stream to its end, which the run waits for."""
    got, _, _ = _stream(tmp_path, monkeypatch, b"PGDMP" + bytes(BIG), psql="exit 3",
                        pg_restore="head -c %d /dev/zero; exec cat >/dev/null" % BIG, again=True, wait=10)
    assert got[1] == 3


@pytest.mark.parametrize("feeder", ["plain", "gzip"])
def test_a_client_that_fails_at_once_ends_the_run_whatever_encpipe_open_has_left(tmp_path, monkeypatch, feeder):
    """psql gone before the stream's end: its source is closed (run's src.close(), _pump's
    close of src), so encpipe open, still writing, ends (SIGPIPE) and the run with it."""
    plain = b"SELECT 1;\n" + b"-- padding\n" * (BIG // 11)
    data = gzip.compress(plain, 1) if feeder == "gzip" else plain
    got, _, _ = _stream(tmp_path, monkeypatch, data + os.urandom(BIG), psql="exit 3")
    assert got[1] == 3 and got[0] in (0, -13, 141)


def test_a_decompressor_that_fails_at_once_ends_the_run_whatever_encpipe_open_has_left(tmp_path, monkeypatch):
    """A gzip stream gzip refuses at its first bytes: the pump's source closed, encpipe
    open ends; the restore fails (status 1), not "holds no data" (EmptyStream)."""
    got, _, _ = _stream(tmp_path, monkeypatch, b"\x1f\x8b" + bytes(BIG))
    assert got[1] == 1 and got[0] in (0, -13, 141)


def test_an_empty_stream_is_empty_only_when_encpipe_open_succeeded(tmp_path, monkeypatch):
    got, _, kinds = _stream(tmp_path, monkeypatch, b"")
    assert isinstance(got, pgstream.EmptyStream) and kinds == []
    shutil.rmtree(tmp_path / "bin")
    got, _, kinds = _stream(tmp_path, monkeypatch, b"", opened=65)
    assert got == (65, 0) and kinds == []


@pytest.mark.parametrize("first", [b"SELECT 1;\n", b"P", b"SET x = 1;\n", b"S\x2a\x4d"])
def test_a_plain_dump_starting_with_a_byte_of_a_skippable_frames_range_goes_to_psql(tmp_path, monkeypatch, first):
    """Only 50..5F followed by 2A 4D 18 (a skippable frame: encpipe-backup's label) is zstd's."""
    got, _, kinds = _stream(tmp_path, monkeypatch, first)
    assert got == (0, 0) and kinds == ["plain"]
    assert _out(tmp_path, "psql.in").split(b"\n", 1)[1] == first


@pytest.mark.parametrize("nibble", [0, 0xA, 0xF])
def test_a_zstd_stream_behind_any_skippable_frame_is_decompressed(tmp_path, monkeypatch, nibble):
    frame = bytes([0x50 + nibble]) + b"\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"labl"
    packed = subprocess.run(["zstd", "-q", "-c"], input=b"SELECT 1;\n", capture_output=True, check=True).stdout
    got, _, kinds = _stream(tmp_path, monkeypatch, frame + packed)
    assert got == (0, 0) and kinds == ["plain"]
    assert _out(tmp_path, "psql.in").split(b"\n", 1)[1] == b"SELECT 1;\n"


@pytest.mark.parametrize("restrict", [True, False])
def test_the_restrict_line_comes_first_only_for_a_psql_that_restricts(tmp_path, monkeypatch, restrict):
    """An older psql allowed (--allow-unrestricted-psql) gets no \\restrict line, which it
    would refuse; the dump's own restrict lines are dropped all the same."""
    dump = b"\\restrict abc\nSELECT 1;\n\\unrestrict abc\n"
    got, _, _ = _stream(tmp_path, monkeypatch, dump, restrict=restrict)
    assert got == (0, 0)
    fed = _out(tmp_path, "psql.in")
    if restrict:
        key = fed.split(b"\n", 1)[0]
        assert re.fullmatch(rb"\\restrict [0-9a-f]{48}", key)
        fed = fed[len(key) + 1:]
    assert fed == b"SELECT 1;\n"


@pytest.mark.parametrize("restrict", [True, False])
def test_a_failed_client_is_psql_naming_errors_only_when_psql_ran_the_sql(tmp_path, monkeypatch, restrict):
    """psql_failed (the hint of QUIET_ARCHIVE): an archive's psql that failed; not
    pg_restore -d's failure (an unrestricted run's, whose errors are whole), nor a psql
    killed by a signal (it named no error)."""
    got, restore, _ = _stream(tmp_path, monkeypatch, b"PGDMP" + bytes(10), restrict=restrict,
                              psql="cat >/dev/null; exit 3", pg_restore="cat >/dev/null; exit 1")
    assert got[1] == (3 if restrict else 1)
    assert restore.psql_failed is restrict
    shutil.rmtree(tmp_path / "bin")
    got, restore, _ = _stream(tmp_path, monkeypatch, b"PGDMP" + bytes(10), psql="cat >/dev/null; kill -9 $$")
    assert got[1] == -9 and restore.psql_failed is False


@pytest.mark.parametrize("restrict", [True, False])
def test_the_archives_tools_and_their_options(tmp_path, monkeypatch, restrict):
    """An archive restricted goes through `pg_restore --exit-on-error --single-transaction
    -f -` (BEGIN and COMMIT round its SQL) to psql; unrestricted, pg_restore -d takes it in
    one transaction, never asking for a password."""
    got, _, _ = _stream(tmp_path, monkeypatch, b"PGDMP" + bytes(10), restrict=restrict,
                        pg_restore="cat >/dev/null; echo 'SELECT 1;'")
    assert got == (0, 0)
    if restrict:
        assert re.fullmatch(rb"\\restrict [0-9a-f]{48}\nSELECT 1;\n", _out(tmp_path, "psql.in"))
        assert _out(tmp_path, "pg_restore.args") == b"--exit-on-error --single-transaction -f -\n"
        assert b"SET default_transaction_read_only = off -f -" in _out(tmp_path, "psql.args")
    else:
        assert _out(tmp_path, "pg_restore.args") == b"--no-password --exit-on-error --single-transaction -d db\n"
        assert _out(tmp_path, "psql.args") is None



@pytest.mark.parametrize("pack", [None, gzip.compress])
def test_pg_dumpalls_dump_is_refused_compressed_too(tmp_path, monkeypatch, pack):
    """A globals file under a dump's name (its CREATE ROLE statements would run as a
    superuser's) is told by its first lines once decompressed too (the decompressor's
    first 8 bytes read on), nothing created."""
    data = b"--\n-- PostgreSQL database cluster dump\n--\n\nCREATE ROLE x;\n"
    got, _, kinds = _stream(tmp_path, monkeypatch, pack(data) if pack else data)
    assert isinstance(got, Failure) and got.status == 65 and kinds == []
    assert "pg_dumpall's dump of a cluster" in str(got)


def test_a_stopped_restore_ends_encpipe_open_too(tmp_path, monkeypatch):
    restore = pgstream.Restore(["sleep", "60"], None, (), (), None, True, lambda cmd, start, **kw: start(cmd, **kw))
    restore.start()
    restore.kill()
    assert restore.procs[0].returncode == -9



@pytest.mark.parametrize("opened", [0, 65])
def test_a_labelled_runs_file_that_gives_nothing_is_not_said_to_hold_no_label(tmp_path, monkeypatch, opened):
    """Empty, or refused by encpipe open (a wrong key): what encpipe open said, or "holds no
    data", not "holds no label ... (a copy of another backup put under this name?)"."""
    named = ("shop_20260101T000000Z.sql.enc", "shop", "20260101T000000Z")
    got, _, kinds = _stream(tmp_path, monkeypatch, b"", opened=opened, named=named)
    assert isinstance(got, pgstream.EmptyStream) if opened == 0 else got == (65, 0)
    shutil.rmtree(tmp_path / "bin")
    got, _, kinds = _stream(tmp_path, monkeypatch, b"SELECT 1;\n", named=named)
    assert isinstance(got, Failure) and got.status == 65 and "holds no label" in str(got) and kinds == []


# encpipe-backup's commit (job.main), its stores stand-ins: each logs its renames and
# take-backs; read_back, the removal of temporary files and of stale ones are stubs
NAME, GNAME = "shop_20260101T000000Z.sql.enc", "shop_20260101T000000Z.globals.sql.enc"


class _Store:
    def __init__(self, place, log, fail=None, keep=False):
        self.place, self.log, self.fail, self.keep, self.unremoved = place, log, fail, keep, {}

    def where(self, name):
        return f"{self.place}/{name}"

    def rename(self, old, new):
        self.log.append(("rename", self.place, new))
        if new == self.fail:
            raise IOFailure(f"cannot rename {old} to {new}: No space left on device")
        return f"{self.place}:{new}"

    def take_back(self, name, mine):
        assert mine == f"{self.place}:{name}"
        self.log.append(("take back", self.place, name))
        if self.keep:
            raise OSError(errno.EACCES, "Permission denied")


def _commit(monkeypatch, tmp_path, *, fail=None, keep=False, back=None, stale=None, stdout=None, options=()):
    """(status, stdout, stderr, log, the metrics recorded) of `commit` of TEMP and GTEMP
    into a local store and a remote (`fail`: the name whose rename fails in the local
    one; `keep`: its take-backs fail too); `back(store, name)`: read_back's result."""
    log = []
    local, remote = _Store("dir", log, fail, keep), _Store("remote:", log)
    monkeypatch.setattr(job, "stores", lambda args, io: [local, remote])
    monkeypatch.setattr(job, "discard", lambda store, name: log.append(("discard", store.place, name)))
    monkeypatch.setattr(job, "remove_stale_temps", stale or (lambda store: log.append(("stale", store.place))))

    def read_back(store, name, mine, written=None):
        log.append(("read back", store.place, name))
        if back:
            return back(store, name)
        return SimpleNamespace(bytes=len(store.place) * 100 + len(name), key_ids=[store.place], slots=1), None
    monkeypatch.setattr(job, "read_back", read_back)
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # an output discarded: not the test run's
    prom = tmp_path / "encpipe.prom"
    out, err = stdout or io.BytesIO(), io.StringIO()
    code = job.main(["commit", "--dir", "dir", "--to", "remote:", "--database", "shop", "--started", "1", "--kind",
                     "sql", "--metrics-file", str(prom), "--globals-temp", ".encpipe-tmp.g", "--globals-name", GNAME,
                     *options, ".encpipe-tmp.x", NAME], stdout=out, stderr=err, env={})
    recorded = metrics.read(str(prom)).get("shop", {}) if prom.exists() else {}
    return code, out.getvalue() if stdout is None else None, err.getvalue(), log, recorded


def test_the_globals_file_is_renamed_first_and_the_local_copy_of_each_last(tmp_path, monkeypatch):
    """A dump never stored without its globals; in each, the file the run leaves (DIR's) last."""
    code, out, err, log, recorded = _commit(monkeypatch, tmp_path)
    assert (code, err) == (0, "")
    assert [e for e in log if e[0] == "rename"] == [("rename", "remote:", GNAME), ("rename", "dir", GNAME),
                                                    ("rename", "remote:", NAME), ("rename", "dir", NAME)]
    line = json.loads(out)
    assert (line["path"], line["remote"], line["globals"]) == (f"dir/{NAME}", f"remote:/{NAME}", GNAME)
    assert (line["bytes"], line["key_ids"]) == (300 + len(NAME), ["dir"])  # DIR's dump's, as read back
    assert ("stale", "remote:") in log and recorded["encpipe_backup_last_size_bytes"] == 300 + len(NAME)


@pytest.mark.parametrize("keep", [False, True])
def test_a_failed_rename_takes_back_what_was_renamed_last_first(tmp_path, monkeypatch, keep):
    """DIR's rename of the dump failing: the three files renamed before taken back, the
    last renamed first; the run's status the rename's (74), recorded failed; a take-back
    that fails is a warning each, and the line says not all of it could be taken back."""
    code, out, err, log, recorded = _commit(monkeypatch, tmp_path, fail=NAME, keep=keep)
    assert (code, out) == (74, b"")
    assert [e for e in log if e[0] == "take back"] == [("take back", "remote:", NAME), ("take back", "dir", GNAME),
                                                       ("take back", "remote:", GNAME)]
    assert recorded["encpipe_backup_last_attempt_success"] == 0
    lines = err.splitlines()
    stored = "not all of it could be taken back" if keep else "nothing was stored"
    assert lines[-1] == (f"encpipe-backup: error: backup of shop failed (status 74): cannot rename .encpipe-tmp.x to "
                         f"{NAME}: No space left on device; {stored}")
    assert lines[:-1] == ([f"encpipe-backup: warning: dir/{GNAME} left in place: Permission denied"] if keep else [])


def test_a_copy_the_remote_could_not_take_back_is_not_said_as_nothing_stored(tmp_path, monkeypatch):
    """A rename's error carrying left_in_place (a copy the remote's moveto made, which it
    could not remove again), every take-back done: not "nothing was stored"."""
    def rename(old, new):
        error = IOFailure(f"cannot move {old} to {new}")
        error.left_in_place = True
        raise error
    monkeypatch.setattr(_Store, "rename", lambda self, old, new: rename(old, new) if self.place == "remote:"
                        else f"{self.place}:{new}")
    code, out, err, log, recorded = _commit(monkeypatch, tmp_path)
    assert log == [("discard", "dir", ".encpipe-tmp.g"),  # nothing renamed, nothing taken back
                   ("discard", "dir", ".encpipe-tmp.x"), ("discard", "remote:", ".encpipe-tmp.g"),
                   ("discard", "remote:", ".encpipe-tmp.x")]
    assert code == 74 and err.endswith("; not all of it could be taken back\n"), err


@pytest.mark.parametrize("outcome", ["cannot read", "not as stored"])
def test_a_read_back_that_fails_is_status_1_and_only_a_file_not_as_stored_is_lost(tmp_path, monkeypatch, outcome):
    """A read back that cannot be made: stored all the same (recorded a success, no size);
    a file that does not read back as stored: the run failed (recorded so). Either: 1."""
    def back(store, name):
        if (store.place, name) != ("dir", NAME):
            return SimpleNamespace(bytes=1, key_ids=[], slots=1), None
        if outcome == "cannot read":
            raise OSError(errno.EIO, "Input/output error")
        return None, "gone"
    code, out, err, log, recorded = _commit(monkeypatch, tmp_path, back=back)
    assert code == 1
    said = "cannot read dir/%s back: Input/output error" % NAME if outcome == "cannot read" \
        else "dir/%s does not read back as stored: gone" % NAME
    assert err == f"encpipe-backup: error: backup written, but {said}\n"
    assert recorded["encpipe_backup_last_attempt_success"] == (1 if outcome == "cannot read" else 0)
    assert json.loads(out)["bytes"] is None  # not the globals file's, nor the remote's


def test_stale_temporary_objects_not_looked_for_are_a_warning(tmp_path, monkeypatch):
    def stale(store):
        raise OSError(errno.ECONNRESET, "Connection reset by peer")
    code, out, err, log, recorded = _commit(monkeypatch, tmp_path, stale=stale)
    assert code == 0 and json.loads(out)["filename"] == NAME
    # the reason alone, as every OSError is said (errors.reason); before, `[Errno 104] Connection reset by peer`
    assert err == "encpipe-backup: warning: stale temporary objects not looked for: Connection reset by peer\n"


class _Output(io.BytesIO):
    def __init__(self, error):
        super().__init__()
        self.error = error

    def write(self, data):
        raise self.error


@pytest.mark.parametrize("error, status", [(BrokenPipeError(errno.EPIPE, "Broken pipe"), 141),
                                           (OSError(errno.ENOSPC, "No space left on device"), 74)])
def test_a_json_line_that_cannot_be_written(tmp_path, monkeypatch, error, status):
    """Its reader gone: 141, nothing said; any other error: 74, saying the backup is stored."""
    code, _, err, log, recorded = _commit(monkeypatch, tmp_path, stdout=_Output(error))
    assert code == status
    assert err == ("" if status == 141 else
                   "encpipe-backup: error: backup written, but cannot write output: No space left on device\n")
    assert recorded["encpipe_backup_last_attempt_success"] == 1


def test_a_metrics_file_that_cannot_be_written_for_the_system_is_said_so(tmp_path, monkeypatch):
    def record(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(metrics, "record", record)
    code, out, err, log, recorded = _commit(monkeypatch, tmp_path)
    assert code == 1 and json.loads(out)["filename"] == NAME
    assert err == (f"encpipe-backup: error: backup written, but metrics not written: cannot write "
                   f"{tmp_path / 'encpipe.prom'}: No space left on device\n")


def _pruning(monkeypatch, pruned):
    """The commit's prune calls `pruned` for prune.prune, its key files judged and read as none."""
    from encpipe import keyplace
    from encpipe.backup import prune, verify

    monkeypatch.setattr(keyplace, "refuse_replaceable", lambda args, allow_shared: None)
    monkeypatch.setattr(verify.KeyRing, "from_args", classmethod(lambda cls, args, io: None))
    monkeypatch.setattr(prune, "prune", pruned)


@pytest.mark.parametrize("dir_outcome, remote_outcome", [(0, 0), (1, 0), (0, "fails")])
def test_the_prune_after_the_commit_names_each_stores_outcome(tmp_path, monkeypatch, dir_outcome, remote_outcome):
    """The prune after the commit, in each store: what it removed, in each, in the line;
    a prune that found problems (its status), or that failed (OSError): said, and 1, the
    other store pruned all the same."""
    outcomes = {"dir": dir_outcome, "remote:": remote_outcome}

    def pruned(store, policy, keys, threads, now, databases, count_unauthenticated):
        if outcomes[store.place] == "fails":
            raise OSError(errno.ECONNRESET, "Connection reset by peer")
        return {"removed": [{"filename": f"{store.place}old"}], "left": []}, outcomes[store.place]
    _pruning(monkeypatch, pruned)
    code, out, err, *_ = _commit(monkeypatch, tmp_path, options=["--keep-last", "1"])
    assert json.loads(out)["pruned"] == ["dirold"] + ([] if remote_outcome else ["remote:old"])
    if (dir_outcome, remote_outcome) == (0, 0):
        assert (code, err) == (0, "")
    elif dir_outcome:
        assert (code, err) == (1, "encpipe-backup: error: backup written, but pruning dir/ found problems (status 1)\n")
    else:
        assert (code, err) == (1, "encpipe-backup: error: backup written, but remote:/ not pruned: Connection reset by "
                                  "peer\n")  # the reason alone (errors.reason), no `[Errno 104]`


def test_a_prune_that_fails_for_a_bug_is_not_said_as_not_pruned(tmp_path, monkeypatch):
    """Only OSError, encpipe's errors and running out are "not pruned" (1); any other
    exception, a bug's, goes on (a traceback, 70), not said as the store's failure."""
    _pruning(monkeypatch, lambda *args, **kwargs: {}["removed"])
    with pytest.raises(KeyError):
        _commit(monkeypatch, tmp_path, options=["--keep-last", "1"])
