"""The guards of the newest code (the cluster marker, rotate's and migrate's owner
checks, a store's read-back, rename and removal, the remote names, errors.ran_out,
earlysig and sigdefer), each broken by hand once (a check dropped, a comparison
flipped) with no test failing: the tests that now see each. The marker's steps are called as encpipe-backup calls them (cluster.check,
claim) on a real directory, its store's failures made by hand."""

import errno
import os
import stat
import subprocess
import sys
from types import SimpleNamespace

import pytest

from encpipe import inplace, pgclient
from encpipe.backup import cluster, remotes
from encpipe.backup import storage
from encpipe.backup.storage import Local, read_back
from encpipe.format import SALT_AT, SALT_LEN
from encpipe.errors import Changed, InputUnavailable, IOFailure, UnsafeDirectory, UsageError, ran_out
from notroot import OPERATOR, READERS
from test_backup_dir import make_valid

MARKER = cluster.MARKER
TEMP = ".encpipe-tmp.marker"


def _store(tmp_path, marker=None):
    if marker is not None:
        (tmp_path / MARKER).write_bytes(cluster.line(marker))
    return Local(str(tmp_path))


@pytest.mark.parametrize("given", ["7412345678901234567\nDROP", "12 34", "", "x" * 21, "1" * 21, "12 paused\n",
                                   "12 pausedx", " paused", "12 unlogged paused"])
def test_an_identifier_that_is_no_number_is_none_the_server_gave(monkeypatch, given):
    """What psql printed is taken as the cluster's only when it is one: else a marker
    holding it (a line break, a space) would be refused as garbled by the next run."""
    monkeypatch.setattr(pgclient, "value", lambda conninfo, query: given)
    assert cluster.system_identifier("shop") == (None, "the server did not give one", [])


def test_an_identifier_that_is_a_number_is_the_clusters(monkeypatch):
    monkeypatch.setattr(pgclient, "value", lambda conninfo, query: "-7412345678901234567")
    assert cluster.system_identifier("shop") == ("-7412345678901234567", None, [])


def test_a_standby_whose_replay_is_paused_is_said_so(monkeypatch):
    monkeypatch.setattr(pgclient, "value", lambda conninfo, query: "7412345678901234567 paused")
    assert cluster.system_identifier("shop") == ("7412345678901234567", None, [cluster.PAUSED])
    monkeypatch.setattr(pgclient, "value", lambda conninfo, query: "7412345678901234567 paused unlogged")
    assert cluster.system_identifier("shop") == ("7412345678901234567", None, [cluster.PAUSED, cluster.UNLOGGED])
    monkeypatch.setattr(pgclient, "value", lambda conninfo, query: "7412345678901234567 unlogged")
    assert cluster.system_identifier("shop") == ("7412345678901234567", None, [cluster.UNLOGGED])


def test_a_psql_that_cannot_be_run_is_an_identifier_not_read(monkeypatch):
    def missing(conninfo, query):
        raise FileNotFoundError(2, "No such file or directory")
    monkeypatch.setattr(pgclient, "value", missing)
    assert cluster.system_identifier("shop") == (None, "cannot run psql: No such file or directory", [])

def test_a_take_over_of_a_location_already_this_servers_writes_nothing(tmp_path):
    """--new-cluster where the marker names this server already: nothing to claim (its
    marker is not removed and written again, a moment with none at all)."""
    store = _store(tmp_path, "7")
    assert cluster.check([store], "7", take_over=True) == []
    assert cluster.check([store], "8", take_over=True) == [store]


def test_a_marker_whose_rename_fails_with_none_there_is_that_error(tmp_path, monkeypatch):
    """The rename's error is the claim's (encpipe-backup's warning `not written`), the
    temporary file removed, nothing claimed."""
    store = _store(tmp_path)

    def refused(name, final):
        raise Changed(f"{store.where(name)} was replaced while it was written; not stored")
    monkeypatch.setattr(store, "rename", refused)
    claimed = []
    with pytest.raises(Changed) as e:
        cluster.claim([store], "7", TEMP, claimed=claimed)
    assert str(e.value) == f"{tmp_path}/{TEMP} was replaced while it was written; not stored"
    assert (os.listdir(tmp_path), claimed) == ([], [])


def test_a_marker_whose_rename_fails_as_this_servers_comes_is_no_error(tmp_path, monkeypatch):
    """Another run of this server's wrote the marker meanwhile: the location is this
    server's, the rename's `already exists` is no error."""
    store = _store(tmp_path)

    def beaten(name, final):
        (tmp_path / MARKER).write_bytes(cluster.line("7"))
        raise IOFailure(f"{store.where(final)} already exists")
    monkeypatch.setattr(store, "rename", beaten)
    claimed = []
    cluster.claim([store], "7", TEMP, claimed=claimed)
    assert (os.listdir(tmp_path), claimed) == ([MARKER], [])


def test_a_location_unlisted_after_a_failed_marker_rename_is_an_io_failure(tmp_path, monkeypatch):
    """Its listing failing as the marker is looked for again: an IOFailure (a warning of
    encpipe-backup's), not a TypeError (a bug's line, 70, the backup given up)."""
    store = _store(tmp_path)

    def refused(name, final):
        raise IOFailure("rclone moveto: connection reset")

    def unlisted():
        raise InputUnavailable(f"cannot read backup directory {tmp_path}: Connection reset by peer")
    monkeypatch.setattr(store, "rename", refused)
    monkeypatch.setattr(store, "list", unlisted)
    with pytest.raises(IOFailure) as e:
        cluster.claim([store], "7", TEMP)
    assert str(e.value) == f"cannot read backup directory {tmp_path}: Connection reset by peer"
    assert os.listdir(tmp_path) == []


def test_a_take_over_whose_old_marker_cannot_be_removed_leaves_no_temporary_file(tmp_path, monkeypatch):
    store = _store(tmp_path, "8")

    def refused(item):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(store, "remove", refused)
    claimed = []
    with pytest.raises(PermissionError):
        cluster.claim([store], "7", TEMP, take_over=True, claimed=claimed)
    assert (os.listdir(tmp_path), claimed) == ([MARKER], [])
    assert (tmp_path / MARKER).read_bytes() == cluster.line("8")


@pytest.mark.parametrize("content, found", [
    (b"encpipe-cluster v1 system_identifier=7412345678901234567\n", "7412345678901234567"),
    (b"encpipe-cluster v1 system_identifier=-7412345678901234567", "-7412345678901234567"),  # by hand: no line end
    (b"encpipe-cluster v1 system_identifier=" + b"1" * 20 + b"\n", "1" * 20),
    (b"encpipe-cluster v1 system_identifier=" + b"1" * 21 + b"\n", None),  # no 64-bit number
    (b"encpipe-cluster v1 system_identifier=7\n\n", None),
    (b"encpipe-cluster v2 system_identifier=7\n", None),
], ids=["written", "no-line-end", "20-digits", "21-digits", "two-lines", "v2"])
def test_what_a_marker_may_hold(tmp_path, content, found):
    (tmp_path / MARKER).write_bytes(content)
    if found is not None:
        assert cluster.read(Local(str(tmp_path))) == found
        return
    with pytest.raises(UnsafeDirectory) as e:
        cluster.read(Local(str(tmp_path)))
    assert str(e.value) == (f"{tmp_path}/{MARKER} is not a cluster marker (not one line 'encpipe-cluster v1 "
                            "system_identifier=N')")


def test_a_run_that_stores_nothing_takes_back_the_marker_of_every_location(tmp_path):
    """--dir and --to both claimed, then the backup not stored: neither keeps a marker."""
    stores = []
    for name in ("dir", "remote"):
        (tmp_path / name).mkdir()
        stores.append(Local(str(tmp_path / name)))
    claimed = []
    cluster.claim(stores, "7", TEMP, claimed=claimed)
    assert [os.listdir(tmp_path / name) for name in ("dir", "remote")] == [[MARKER], [MARKER]]
    assert cluster.take_back(claimed) == []
    assert (claimed, os.listdir(tmp_path / "dir"), os.listdir(tmp_path / "remote")) == ([], [], [])


def test_a_marker_that_cannot_be_taken_back_is_a_sentence(tmp_path, monkeypatch):
    """A run that stores nothing says which marker it leaves and why (a warning each),
    whatever the store raises: not a traceback for an OSError."""
    store = _store(tmp_path)
    claimed = []
    cluster.claim([store], "7", TEMP, claimed=claimed)

    def refused(final, renamed):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(store, "take_back", refused)
    assert cluster.take_back(claimed) == [f"{tmp_path}/{MARKER} not removed: Permission denied"]
    assert (claimed, os.listdir(tmp_path)) == ([], [MARKER])

def test_a_location_whose_listing_fails_for_want_of_descriptors_is_a_warning(tmp_path, monkeypatch):
    """Out of descriptors, a directory's listing is an IOFailure (74), not InputUnavailable:
    its marker unchecked is a warning as well, the run's own steps then say what fails."""
    store = _store(tmp_path)

    def unlisted():
        raise IOFailure(f"cannot read backup directory {tmp_path}: Too many open files")
    monkeypatch.setattr(store, "list", unlisted)
    said = []
    assert cluster.check([store], "7", warn=said.append) == []
    assert said == [f"{MARKER} not checked: cannot read backup directory {tmp_path}: Too many open files"]


def test_a_local_file_that_cannot_be_removed_is_said_and_one_never_made_is_not(tmp_path, monkeypatch):
    """A read-only or otherwise refusing directory: the file left is named (the run's
    error line says it), one that is not there is no file left."""
    (tmp_path / TEMP).write_bytes(b"x")
    store = Local(str(tmp_path))

    def refused(name, dir_fd=None):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(os, "unlink", refused)
    said = f"{tmp_path}/{TEMP} not removed: Read-only file system"
    assert storage.discard(store, TEMP) == said
    assert storage.discard(store, ".encpipe-tmp.never-made") is None
    assert (store.unremoved, os.listdir(tmp_path)) == ({TEMP: said}, [TEMP])


def _owned(uid, gid, mode=stat.S_IFREG | 0o640):
    return SimpleNamespace(st_uid=uid, st_gid=gid, st_mode=mode)


@pytest.mark.parametrize("egid, groups, gid, directory, left", [
    (OPERATOR, [OPERATOR, READERS], READERS, _owned(OPERATOR, OPERATOR, stat.S_IFDIR | 0o750), False),
    (READERS, [OPERATOR], READERS, _owned(OPERATOR, OPERATOR, stat.S_IFDIR | 0o750), False),
    (OPERATOR, [OPERATOR], READERS, _owned(OPERATOR, READERS, stat.S_IFDIR | 0o2750), False),
    (OPERATOR, [OPERATOR], READERS, _owned(OPERATOR, READERS, stat.S_IFDIR | 0o750), True),
    (OPERATOR, [OPERATOR], READERS, _owned(OPERATOR, OPERATOR, stat.S_IFDIR | 0o2750), True),
], ids=["supplementary", "effective", "setgid-dir", "dir-group-only", "setgid-other-group"])
def test_which_groups_rotate_and_migrate_keep_not_run_as_root(monkeypatch, egid, groups, gid, directory, left):
    """A file in any group the caller is in (its effective one, a supplementary one: the
    new file can be given it), or in the one a set-group-ID directory gives, is rotated;
    another group's file, that of a directory that is not set-group-ID too, is left."""
    monkeypatch.setattr(os, "geteuid", lambda: OPERATOR)
    monkeypatch.setattr(os, "getegid", lambda: egid)
    monkeypatch.setattr(os, "getgroups", lambda: groups)
    why = inplace.owner_not_kept(_owned(OPERATOR, gid), directory, "rotate", "rotated")
    assert why == (f"in group {READERS}, which the user running rotate is not in: rotated, it would lose that "
                   "group (only root keeps it); left alone" if left else None)


def test_a_local_backup_read_back_at_another_size_than_renamed_is_not_stored(tmp_path):
    """A local rename gives an os.stat result (st_size, not an object's size): its size
    is checked as a remote object's is."""
    name = "shop_20250101T000000Z.sql.enc"
    make_valid(tmp_path, name)
    renamed = os.lstat(tmp_path / name)
    store = Local(str(tmp_path))
    found, why = read_back(store, name, renamed)
    assert (found.bytes, why) == (renamed.st_size, None)
    assert read_back(store, name, SimpleNamespace(st_size=renamed.st_size + 1)) == (
        None, f"{name} is {renamed.st_size} bytes, {renamed.st_size + 1} were stored")


def test_a_local_backup_read_back_is_the_file_this_run_wrote(tmp_path):
    """write_new records each file's payload salt and size; read back under its final
    name, another sealed file (one a writer of the location put under the temporary
    name before the rename: another salt, or the same salt at another size) is not the
    backup stored (tests/test_remote_temp_swapped.py: the same through rclone)."""
    name = "shop_20250101T000000Z.sql.enc"
    make_valid(tmp_path, name)
    renamed = os.lstat(tmp_path / name)
    data = (tmp_path / name).read_bytes()
    store = Local(str(tmp_path))
    salt = data[SALT_AT : SALT_AT + SALT_LEN]
    assert read_back(store, name, renamed, (salt, len(data)))[0].bytes == len(data)
    other = f"{name} is not the file this run wrote (another file was put under its temporary name)"
    assert read_back(store, name, renamed, (bytes(SALT_LEN), len(data))) == (None, other)
    assert read_back(store, name, renamed, (salt, len(data) + 1)) == (None, other)


@pytest.mark.parametrize("location, path_at", [
    (":s3,env_auth=true:bucket/x", 18),  # a backend made on the fly
    (":s3:bucket", 4),
    ("my remote,region=eu:b", 20),
    ("x--:y", 4), ("x- y:z", 5), ("off+site:up", 9),
    ("x-:y", None), ("x :y", None), ("-x:y", None), ("a/b:c", None),  # rclone: invalid, or a local path
], ids=lambda v: repr(v))
def test_which_locations_name_a_remote_as_rclone_reads_them(tmp_path, monkeypatch, location, path_at):
    monkeypatch.chdir(tmp_path)
    assert (remotes.prefix_end(location), remotes.is_remote(location)) == (path_at, path_at is not None)


def test_a_backend_made_on_the_fly_that_gives_a_credential_is_refused():
    with pytest.raises(UsageError) as e:
        remotes.refuse_credentials(":s3,provider=AWS,secret_access_key=AKIAXYZ:bucket", "--to")
    assert str(e.value) == ("--to: the remote's connection string gives secret_access_key: a credential would be on "
                            "rclone's command line, where other users can read it")


@pytest.mark.parametrize("location", [
    ":s3,provider=Rclone,endpoint=http://127.0.0.1:9000,secret_access_key=AKIAXYZ:backups/cs",
    ":s3,endpoint=https://host:443,password=x:b", ":s3,endpoint=http://h:1:b,session_token=t",
])
def test_a_credential_after_a_urls_colon_is_refused(location):
    """An unquoted value ends at the first colon: after a URL's, rclone reads the rest as
    the path, and so did the check, which never saw the credential there: it went on
    rclone's command line, into a systemd unit and into every error line."""
    with pytest.raises(UsageError) as e:
        remotes.refuse_credentials(location, "--to")
    assert str(e.value).startswith("--to: the remote's connection string gives ")
    assert remotes.refuse_credentials(":s3,provider=Rclone,endpoint=http://127.0.0.1:9000:backups/cs", "--to") is None


def _raised_from(cause, kind=SystemError, words="error return without exception set"):
    try:
        raise kind(words) from cause
    except kind as e:
        return e


@pytest.mark.parametrize("error, said", [
    (MemoryError(), "out of memory"),
    (OSError(errno.EMFILE, "Too many open files"), "out of system resources: Too many open files"),
    (OSError(errno.ENFILE, "Too many open files in system"), "out of system resources: Too many open files in system"),
    (OSError(errno.EAGAIN, "Resource temporarily unavailable"), "out of system resources: Resource temporarily "
                                                                "unavailable"),
    (OSError(errno.ENOMEM, "Cannot allocate memory"), "out of system resources: Cannot allocate memory"),
    (OSError(errno.ENOSPC, "No space left on device"), None),  # the run's own error (74 too), not a resource
    (RuntimeError("can't start new thread"), "out of system resources: cannot start a thread"),
    (RuntimeError("something else"), None),
    # a lock that cannot be had (the import system's, as a thread imports under an address-space
    # limit: a backup's globals were `internal error`, 70, with nothing recorded)
    (RuntimeError("can't allocate lock"), "out of memory"),
    # _io's, as open_code reads a module for an import in a thread (its buffer's lock): a backup's
    # globals were `internal error: RuntimeError at <frozen importlib._bootstrap_external>`, 70
    (RuntimeError("can't allocate read lock"), "out of memory"),
    (RuntimeError("could not allocate lock"), "out of memory"),  # bz2's, lzma's
    (RuntimeError("can't allocate the lock of my own thing"), None),
    (ImportError("_ssl.so: failed to map segment from shared object"), "out of memory"),
    (ImportError("_ssl.so: failed to map segment from shared object: Operation not permitted"), None),  # noexec
    (ImportError("_ssl.so: failed to map segment from shared object: Permission denied"), None),
    # dlopen's other words for memory that cannot be had: a TLS block, zero-filled pages, a descriptor
    (ImportError("libffi.so.8: cannot allocate memory in static TLS block"), "out of memory"),
    (ImportError("_rust.abi3.so: cannot map zero-fill pages"), "out of memory"),
    (ImportError("_raw_ecb.so: cannot create shared object descriptor: Cannot allocate memory"), "out of memory"),
    (ImportError("libcrypto.so.3: cannot open shared object file: No such file or directory"), None),
    (_raised_from(MemoryError()), "out of memory"),  # the interpreter's own, raised from one
    (_raised_from(ValueError("x")), None),
    (SystemError("no cause"), None),
    # an extension's (cryptography's Rust module, under a 50 MiB address space), raised from one
    (_raised_from(MemoryError(), RuntimeError, "An error occurred while initializing class Sct"), "out of memory"),
    (_raised_from(ValueError("x"), RuntimeError, "An error occurred while initializing class Sct"), None),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None)
def test_what_counts_as_a_resource_run_out(error, said):
    assert ran_out(error) == said


def test_a_sigint_ignored_as_the_process_starts_stays_ignored():
    """earlysig.hold() notes a SIGINT only where Python's own handler would raise: one
    ignored by whoever started the process (a shell's background job, nohup) stays
    ignored, and is never raised again by release()."""
    probe = ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nfrom encpipe import earlysig\n"
             "earlysig.hold()\nprint(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n"
             "signal.raise_signal(signal.SIGINT)\nprint('went on')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": root}, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"True\nwent on\n", b"")


SETTLED = """import os, signal
from encpipe import sigdefer
names = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
sigdefer.settle()  # no hold_for_good: nothing
print([signal.getsignal(s) == signal.SIG_IGN for s in names])
sigdefer.hold_for_good()
sigdefer.settle()
print([signal.getsignal(s) == signal.SIG_IGN for s in names], sigdefer.committed())
for s in names:
    os.kill(os.getpid(), s)
print("went on")
"""


def test_a_run_whose_change_is_made_drops_every_signal_until_it_has_ended():
    """After hold_for_good(), settle() (at the exit) ignores SIGINT, SIGTERM and SIGHUP:
    one that comes as the process ends neither kills it nor changes its status."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", SETTLED], env={**os.environ, "PYTHONPATH": root},
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"[False, False, False]\n[True, True, True] False\n"
                                                              b"went on\n", b"")


SECOND = """import signal
from encpipe import sigdefer
ran = []
signal.signal(signal.SIGTERM, sigdefer.outside_imports(lambda signum, frame: ran.append(signum)))
with sigdefer.Commit() as commit:
    commit.hold()
    signal.raise_signal(signal.SIGTERM)  # held: the change made is reported first
    first = list(ran)
    signal.raise_signal(signal.SIGTERM)  # a second one, the first still waiting: at once
    second = list(ran)
ended = list(ran)
sigdefer.drained(0)  # as main returns
print(first, second, ended, ran)
"""


def test_a_second_signal_in_a_commit_runs_once_and_the_first_never_after_it():
    """A second signal, the first still held by a Commit, goes to its handler at once;
    the first's wait ends there (its retry stopped): the handler runs once, not again
    as the block ends (the first's retry) nor as main returns (its timer's)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", SECOND], env={**os.environ, "PYTHONPATH": root},
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"[] [15] [15] [15]\n", b"")


@pytest.mark.parametrize("remote", [":b2,-account=0012ab34cd:bucket", ":azureblob,_account=acct,env_auth=true:box"])
def test_an_account_parameter_written_with_a_leading_dash_or_underscore_is_refused(remote):
    """is_secret strips a leading - or _: `account` (a whole-name match) is refused so written too."""
    with pytest.raises(UsageError) as refused:
        remotes.refuse_credentials(remote, "--to")
    assert "account: a credential would be on rclone's command line" in str(refused.value)
    assert "0012ab34cd" not in str(refused.value) and "acct" not in str(refused.value)
