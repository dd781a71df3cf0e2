"""Resources that run out for real: a small tmpfs that fills (ENOSPC), a file
system remounted read-only (EROFS), descriptors (EMFILE) and address space
(MemoryError) capped with prlimit. Each fails closed: one error line, a
documented status, nothing on standard output, no traceback, nothing left
behind, nothing that was there lost."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.craft import assert_error_lines, clean_env, command

REPO = Path(__file__).resolve().parent.parent
KEY = "3e" * 32
KEY_ENV = {"ENCPIPE_KEY": KEY}
WAIT = 120
PAGE = 4096


def _mount(point, options):
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "encpipe-test", str(point)],
                          capture_output=True, timeout=WAIT).returncode == 0


@pytest.fixture()
def tmpfs(tmp_path):
    """tmpfs(name, pages_free): a tmpfs under tmp_path with exactly that many
    pages left (a filler file takes the rest); unmounted after the test."""
    mounted = []

    def make(name, pages_free, pages=16, mode="700", inodes=""):
        point = tmp_path / name
        point.mkdir()
        if os.geteuid() != 0 or not _mount(point, f"size={pages * PAGE},mode={mode}{inodes}"):
            pytest.skip("needs root to mount a tmpfs")
        mounted.append(point)
        (point / ".fill").write_bytes(bytes((pages - pages_free) * PAGE))
        return point

    yield make
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=WAIT)


def run(args, data=b"", env=None, **kwargs):
    return subprocess.run(command(*args), input=data, capture_output=True, env=clean_env({**KEY_ENV, **(env or {})}),
                          timeout=WAIT, **kwargs)


# --- the witnesses of two passes, in TMPDIR ---------------------------------------------------

RECORDS = 700  # 16 bytes of witness each: more than the spool's buffer and the one page left


@pytest.fixture(scope="module")
def many_records(tmp_path_factory):
    """A signed file of RECORDS 16 KiB chunks, and the verify key of its signer."""
    where = tmp_path_factory.mktemp("records")
    sign_key = where / "sign.key"
    made = run(["keygen", "--sign", "-o", str(sign_key)])
    assert made.returncode == 0, made.stderr
    sealed = run(["seal", "--chunk-size", "16K", "--sign-key", str(sign_key)], os.urandom(RECORDS << 14))
    assert sealed.returncode == 0, sealed.stderr
    path = where / "f.enc"
    path.write_bytes(sealed.stdout)
    return path, made.stdout.decode().split()[-1]


@pytest.mark.parametrize("option", ["--verify-first", "--signer", "--signer of a pipe"])
def test_open_whose_witnesses_fill_tmpdir_says_so(tmpfs, many_records, option):
    """The first pass's witnesses go to an unlinked file in TMPDIR; when TMPDIR
    fills, the error is that file's, not `cannot write output` (standard output
    had room): closing the spool flushed its buffer again, and that second
    ENOSPC, a bare OSError, replaced the first."""
    path, signer = many_records
    tmpdir = tmpfs("tmp", pages_free=1, mode="1777")
    args = ["open", option.split()[0], *([signer] if option.startswith("--signer") else [])]
    if option.endswith("pipe"):  # spooled as ciphertext to TMPDIR too
        with open(path, "rb") as pipe_source:
            feeder = subprocess.Popen(["cat"], stdin=pipe_source, stdout=subprocess.PIPE)
        done = subprocess.run(command(*args), stdin=feeder.stdout, capture_output=True, timeout=WAIT,
                              env=clean_env({**KEY_ENV, "TMPDIR": str(tmpdir)}))
        feeder.stdout.close()
        feeder.wait(timeout=WAIT)
    else:
        done = run([*args, str(path)], env={"TMPDIR": str(tmpdir)})
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    assert_error_lines(done.stderr.decode(), "temporary file", "No space left on device")
    assert sorted(os.listdir(tmpdir)) == [".fill"]


# --- descriptors running out (EMFILE) in the scripts ------------------------------------------

# From few descriptors (bash's own start fails below 6, before encpipe runs) to enough: each
# limit meets EMFILE at another step (a child's start, its pipes, a temporary file, psql).
DESCRIPTORS = range(6, 40)


def _limited(argv, nofile):
    return ["prlimit", f"--nofile={nofile}", "--", *argv]


@pytest.fixture(scope="module")
def restorable(pg, tools, key_file, tmp_path_factory):
    from test_backup_restore import backup, ensure_small

    db = ensure_small(pg, "exhaustion_source", rows=100)
    path, _ = backup(pg, tools, str(tmp_path_factory.mktemp("exhaustion") / "b"), db, "--key-file", key_file)
    return path, db


def test_restore_out_of_descriptors_at_any_step_fails_closed(pg, tools, key_file, restorable):
    """Before, a child's start that met EMFILE was `internal error: OSError at
    subprocess.py:...` (70, `a bug of encpipe's`), or `cannot run encpipe: python3`
    (66, no reason: as if encpipe were missing). Each is one line naming the cause,
    74 (or psql's step failing, 1), the target untouched, no scratch database left."""
    from test_backup_restore import RESTORE, databases, drop_matching, dump, script_env

    path, source = restorable
    target = "exhaustion_target"
    drop_matching(pg, lambda d: d.startswith(target) or d.startswith("encpipe_restore_"))
    pg.createdb(target)
    pg.psql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7);", db=target)
    before = dump(pg, target)
    env = script_env(pg, tools)
    seen = set()
    for nofile in DESCRIPTORS:
        done = subprocess.run(_limited([RESTORE, "--key-file", key_file, path, target], nofile),
                              capture_output=True, env=env, timeout=WAIT)
        stderr = done.stderr.decode()
        if done.returncode == 0:
            break
        seen.add(done.returncode)
        assert done.stdout == b"" and done.returncode in (1, 74), (nofile, stderr)
        assert_one_line(stderr, "encpipe-restore")
        assert "Too many open files" in stderr and "internal error" not in stderr, (nofile, stderr)
        assert dump(pg, target) == before, nofile
        assert not [d for d in databases(pg) if d.startswith(("encpipe_restore_", target + "_pre_restore_"))]
    else:
        pytest.fail(f"no restore succeeded with up to {nofile} descriptors")
    assert 74 in seen, seen
    assert dump(pg, target) == dump(pg, source)
    drop_matching(pg, lambda d: d.startswith(target))


def assert_one_line(stderr, prog):
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: ") and "Traceback" not in stderr, stderr


# --- address space running out (MemoryError, no thread) -----------------------------------

MEBIBYTE = 1 << 20
# From an address space Python barely starts in to one a backup of 16 MiB chunks needs: the
# allocation that fails moves from seal's buffers to its threads, zstd's, the globals' thread.
ADDRESS_SPACES = range(30, 165, 5)  # up to where a run stores: near 100 MiB, zstd's own allocations fail at times


def test_backup_out_of_memory_at_any_step_records_the_failure_and_leaves_nothing(pg, tools, key_file, tmp_path):
    """A MemoryError in the sealing (a chunk buffer, a worker thread that cannot
    start) went past the run's clean-up: `internal error` (70), or after the
    one-line fix of that, `out of memory` (74) with the `.encpipe-tmp.*` files
    left and no failed run in --metrics-file; in the globals' thread it was
    `cannot seal the globals: ` and the exception's (empty) words, 70. Now each
    is 74, one line, the temporary files removed, the failure recorded. A limit
    at which a native library (the `cryptography` package's Rust code, zstd)
    aborts the process instead is a killed run: its temporary files wait for
    the next run (README, "Backing up")."""
    from test_backup_restore import BACKUP, ensure_small, script_env

    db = ensure_small(pg, "exhaustion_memory", rows=2000)
    env = script_env(pg, tools)
    seen = {}
    for space in ADDRESS_SPACES:
        directory = tmp_path / f"as{space}"
        metrics = tmp_path / f"as{space}.prom"
        argv = [BACKUP, "--dir", str(directory), "--metrics-file", str(metrics), "--key-file", key_file,
                "--chunk-size", "16M", db]
        done = subprocess.run(["prlimit", f"--as={space * MEBIBYTE}", "--", *argv], capture_output=True, env=env,
                              timeout=WAIT)
        stderr = done.stderr.decode(errors="replace")
        left = sorted(os.listdir(directory)) if directory.exists() else []
        if done.returncode < 0 or done.returncode in (134, 139):  # aborted in native code: a killed run
            seen.setdefault("killed", space)
            continue
        if done.returncode == 0:
            seen.setdefault("stored", space)
            assert len([n for n in left if not n.startswith(".")]) == 2, (space, left)
            if "out of" in seen:
                break  # more room stores too
            continue
        seen.setdefault(done.returncode, space)
        # 64: the cipher's shared library, loaded once pg_dump runs, that cannot be mapped; 1: zstd failed
        assert done.returncode in (1, 64, 74) and done.stdout == b"", (space, stderr)
        if stderr == "encpipe-backup: error: out of memory\n":  # no room even to begin: nothing made
            assert left == [], (space, left)
            continue
        # the children's own lines pass on before the run's one line (zstd's allocation error)
        ours = [line for line in stderr.splitlines() if not line.startswith(("zstd: ", "pg_dump: ", "pg_dumpall: "))]
        assert_one_line("\n".join(ours), "encpipe-backup")
        if "out of memory" in stderr or "out of system resources" in stderr:
            seen.setdefault("out of", space)
        assert [n for n in left if n.startswith(".encpipe-tmp.")] == [], (space, left)
        assert 'encpipe_backup_last_attempt_success{database="exhaustion_memory"} 0' in metrics.read_text(), space
    assert "out of" in seen and "stored" in seen, seen


def test_seal_o_out_of_memory_or_threads_is_74_and_leaves_nothing(tmp_path):
    """16 MiB chunks on 4 threads under a shrinking address space: a buffer that
    cannot be had was `out of memory` with 70, a worker thread that cannot start
    `internal error: RuntimeError ... (a bug of encpipe's)`, 70; neither is a bug."""
    plaintext = os.urandom(1 << 20) * 40
    target = tmp_path / "out.enc"
    seen = set()
    for space in range(30, 410, 20):
        argv = ["prlimit", f"--as={space * MEBIBYTE}", "--",
                *command("seal", "-o", str(target), "--chunk-size", "16M", "--threads", "4")]
        done = subprocess.run(argv, input=plaintext, capture_output=True, env=clean_env(KEY_ENV), timeout=WAIT)
        if done.returncode == 0:
            seen.add("sealed")
            break
        if done.returncode < 0 or done.returncode in (134, 139):  # aborted in native code
            continue
        seen.add(done.stderr.decode())
        assert (done.returncode, done.stdout) == (74, b""), (space, done.stderr)
        assert_error_lines(done.stderr.decode(), "out of ")
        assert os.listdir(tmp_path) == [], space
    assert "sealed" in seen and len(seen) > 1, seen
    assert run(["open", str(target)]).stdout == plaintext


def test_backup_out_of_descriptors_at_any_step_is_recorded_and_keeps_what_was_there(pg, tools, key_file, tmp_path):
    """Before, pg_dump or pg_dumpall that could not be started (EMFILE) made the run
    exit 127, a status encpipe-backup does not have (README, "Exit status"); a
    child's own status (zstd's 11 when it cannot allocate) was the run's too. Now a
    start that met EMFILE is 74, another child's failure 1, its own status in the line."""
    from test_backup_restore import BACKUP, ensure_small, script_env

    db = ensure_small(pg, "exhaustion_fds", rows=100)
    directory, metrics = tmp_path / "b", tmp_path / "metrics.prom"
    argv = [BACKUP, "--dir", str(directory), "--metrics-file", str(metrics), "--key-file", key_file, db]
    first = subprocess.run(argv, capture_output=True, env=script_env(pg, tools), timeout=WAIT)
    assert first.returncode == 0, first.stderr
    before = {name: (directory / name).read_bytes() for name in os.listdir(directory)}
    seen = set()
    for nofile in DESCRIPTORS:
        metrics.unlink(missing_ok=True)
        done = subprocess.run(_limited(argv, nofile), capture_output=True, env=script_env(pg, tools), timeout=WAIT)
        stderr = done.stderr.decode()
        if done.returncode == 0:
            break
        seen.add(done.returncode)
        assert done.returncode in (1, 74) and done.stdout == b"", (nofile, stderr)
        assert_one_line(stderr, "encpipe-backup")
        assert "Too many open files" in stderr, (nofile, stderr)
        assert {name: (directory / name).read_bytes() for name in os.listdir(directory)} == before, nofile
        if "metrics not written" not in stderr:
            assert f'encpipe_backup_last_attempt_success{{database="{db}"}} 0' in metrics.read_text(), nofile
    else:
        pytest.fail(f"no backup succeeded with up to {nofile} descriptors")
    assert 74 in seen, seen


# --- a standard output that takes part of a write (PYTHONUNBUFFERED) ---------------------------

# PYTHONUNBUFFERED=1 (common in containers and service units) makes standard output an
# unbuffered file: a write on a disk that fills takes what fits and says how much; the
# rest was dropped, the status 0.
UNBUFFERED = {"PYTHONUNBUFFERED": "1"}


@pytest.fixture()
def nearly_full(tmpfs):
    """A file `out` that ends 4 bytes before a page's end, on a tmpfs with no page
    left: the next write to it takes 4 bytes, the one after fails (ENOSPC)."""
    point = tmpfs("nearly", pages_free=1, pages=3)
    out = point / "out"
    out.write_bytes(bytes(PAGE - 4))
    return out


@pytest.mark.parametrize("args", [["keygen"], ["keyid"], ["inspect", "--json", "FILE"]],
                         ids=" ".join)
def test_output_that_takes_part_of_a_write_is_74(tmp_path, nearly_full, args):
    """`encpipe keygen >> keys` on a filling disk stored 4 bytes of the 65 of a key
    and exited 0: a key file that holds no key, said to be one."""
    sealed = tmp_path / "f.enc"
    sealed.write_bytes(run(["seal"], b"data").stdout)
    args = [str(sealed) if a == "FILE" else a for a in args]
    with open(nearly_full, "ab") as out:
        done = subprocess.run(command(*args), stdout=out, stderr=subprocess.PIPE,
                              env=clean_env({**KEY_ENV, **UNBUFFERED}), timeout=WAIT)
    assert done.returncode == 74, done.stderr
    assert_error_lines(done.stderr.decode(), "No space left on device")


def test_remote_restore_whose_tmpdir_fills_says_so_not_tampered(pg, tools, key_file, tmpfs, tmp_path):
    """The fetch of a remote FILE into TMPDIR wrote what fitted, dropped the rest and
    succeeded; the restore then refused the copy as `truncated, corrupt or was tampered
    with` (65). A full TMPDIR is the fetch's failure: 74, `No space left on device`."""
    from test_backup_restore import RESTORE, backup, databases, dump, ensure_small, script_env

    source = ensure_small(pg, "exhaustion_remote", rows=2000)  # sealed, several pages
    path, _ = backup(pg, tools, str(tmp_path / "b"), source, "--key-file", key_file, "--compress", "none")
    assert os.path.getsize(path) > 2 * PAGE
    before = dump(pg, source)
    tmpdir = tmpfs("fetch", pages_free=1, mode="1777")
    env = script_env(pg, tools, TMPDIR=str(tmpdir), RCLONE_CONFIG=str(tmpdir.parent / "rclone.conf"),
                     RCLONE_CONFIG_HERE_TYPE="alias", RCLONE_CONFIG_HERE_REMOTE=os.path.dirname(path), **UNBUFFERED)
    remote = "here:" + os.path.basename(path)
    done = subprocess.run([RESTORE, "--no-globals", "--key-file", key_file, remote, source], capture_output=True,
                          env=env, timeout=WAIT)
    stderr = done.stderr.decode()
    assert (done.returncode, done.stdout) == (74, b""), stderr
    assert_one_line(stderr, "encpipe-restore")
    assert f"cannot fetch {remote}" in stderr and "No space left on device" in stderr, stderr
    assert sorted(os.listdir(tmpdir)) == [".fill"]
    assert dump(pg, source) == before
    assert not [d for d in databases(pg) if d.startswith("encpipe_restore_")]


def test_rotate_whose_report_takes_part_of_a_write_is_74(tmp_path, nearly_full):
    """encpipe-rotate's report line (write_line, text through sys.stdout) lost its
    tail the same way, and the run said 0."""
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "a.enc").write_bytes(run(["seal"], b"data").stdout)
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    for path, key in ((old, KEY), (new, "4f" * 32)):
        path.write_text(key + "\n")
        path.chmod(0o600)
    argv = [str(REPO / "scripts" / "encpipe-rotate"), "--old-key-file", str(old), "--new-key-file", str(new),
            str(directory)]
    with open(nearly_full, "ab") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE,
                              env=clean_env({"PYTHONPATH": str(REPO), **UNBUFFERED}), timeout=WAIT)
    assert done.returncode == 74, done.stderr
    assert_one_line(done.stderr.decode(), "encpipe-rotate")
    assert "No space left on device" in done.stderr.decode()


# --- a file system remounted read-only (EROFS) --------------------------------------------------


def test_backup_into_a_read_only_dir_keeps_what_is_there_and_names_no_phantom(pg, tools, key_file, tmpfs, tmp_path):
    """DIR remounted read-only: the run fails (74), the backups there stay, and its
    line named the temporary files it had never made as `not removed: Read-only file
    system` (unlink meets EROFS before it would meet ENOENT), sending the operator
    after files that do not exist."""
    from test_backup_restore import BACKUP, ensure_small, script_env

    db = ensure_small(pg, "exhaustion_ro", rows=10)
    directory = tmpfs("ro", pages_free=200, pages=256)
    metrics = tmp_path / "metrics.prom"
    argv = [BACKUP, "--dir", str(directory), "--metrics-file", str(metrics), "--key-file", key_file, db]
    assert subprocess.run(argv, capture_output=True, env=script_env(pg, tools), timeout=WAIT).returncode == 0
    before = {name: (directory / name).read_bytes() for name in os.listdir(directory)}
    assert subprocess.run(["mount", "-o", "remount,ro", str(directory)], capture_output=True,
                          timeout=WAIT).returncode == 0
    done = subprocess.run(argv, capture_output=True, env=script_env(pg, tools), timeout=WAIT)
    stderr = done.stderr.decode()
    assert (done.returncode, done.stdout) == (74, b""), stderr
    assert_one_line(stderr, "encpipe-backup")
    assert "Read-only file system" in stderr and "not removed" not in stderr, stderr
    assert {name: (directory / name).read_bytes() for name in os.listdir(directory)} == before
    assert f'encpipe_backup_last_attempt_success{{database="{db}"}} 0' in metrics.read_text()


def test_restore_out_of_memory_at_any_step_leaves_the_database(pg, tools, key_file, restorable):
    """A thread that cannot start or a MemoryError in encpipe-restore was `internal
    error: ...` and 70; now `out of ...` and 74, the target untouched, no scratch left."""
    from test_backup_restore import RESTORE, databases, drop_matching, dump, script_env

    path, source = restorable
    target = "exhaustion_memory_target"
    drop_matching(pg, lambda d: d.startswith(target) or d.startswith("encpipe_restore_"))
    pg.createdb(target)
    pg.psql("CREATE TABLE kept (x int);", db=target)
    before = dump(pg, target)
    seen = set()
    for space in range(25, 410, 20):  # from 25 MiB: see the prune test below
        argv = ["prlimit", f"--as={space * MEBIBYTE}", "--", RESTORE, "--key-file", key_file, path, target]
        done = subprocess.run(argv, capture_output=True, env=script_env(pg, tools), timeout=WAIT)
        stderr = done.stderr.decode(errors="replace")
        if done.returncode == 0:
            break
        if done.returncode < 0 or done.returncode in (134, 139):  # aborted in native code
            continue
        seen.add(stderr)
        assert (done.returncode, done.stdout) == (74, b""), (space, stderr)
        assert_one_line(stderr, "encpipe-restore")
        assert "out of " in stderr, (space, stderr)
        assert dump(pg, target) == before, space
        assert not [d for d in databases(pg) if d.startswith(("encpipe_restore_", target + "_pre_restore_"))]
    else:
        pytest.fail("no restore succeeded")
    assert seen, "no limit made the restore fail"
    assert dump(pg, target) == dump(pg, source)
    drop_matching(pg, lambda d: d.startswith(target))


def test_remote_restore_whose_tmpdir_has_no_inode_left_is_one_line(pg, tools, key_file, restorable, tmpfs):
    """TMPDIR with room but one inode left: the dump's copy takes it, the globals
    file's cannot be made (ENOSPC from mkstemp), which was `internal error: OSError
    at tempfile.py:...` and 70. Now the fetch's failure: 74, nothing changed, the
    dump's copy removed."""
    from test_backup_restore import RESTORE, databases, dump, script_env

    path, source = restorable
    before = dump(pg, source)
    tmpdir = tmpfs("inodes", pages_free=16, pages=64, mode="1777", inodes=",nr_inodes=3")  # root, .fill, one
    env = script_env(pg, tools, TMPDIR=str(tmpdir), RCLONE_CONFIG=str(tmpdir.parent / "rclone.conf"),
                     RCLONE_CONFIG_HERE_TYPE="alias", RCLONE_CONFIG_HERE_REMOTE=os.path.dirname(path))
    remote = "here:" + os.path.basename(path)
    done = subprocess.run([RESTORE, "--key-file", key_file, remote, source], capture_output=True, env=env,
                          timeout=WAIT)
    stderr = done.stderr.decode()
    assert (done.returncode, done.stdout) == (74, b""), stderr
    assert_one_line(stderr, "encpipe-restore")
    assert "No space left on device" in stderr and "nothing was changed" in stderr, stderr
    assert sorted(os.listdir(tmpdir)) == [".fill"]
    assert dump(pg, source) == before
    assert not [d for d in databases(pg) if d.startswith("encpipe_restore_")]


@pytest.fixture(scope="module")
def two_runs(pg, tools, key_file, tmp_path_factory):
    """A directory with two runs of one database (dump and globals file each)."""
    import time

    from test_backup_restore import backup, ensure_small

    db = ensure_small(pg, "exhaustion_prune", rows=100)
    directory = tmp_path_factory.mktemp("prune") / "b"
    backup(pg, tools, str(directory), db, "--key-file", key_file)
    time.sleep(1.1)  # another second: another run's name
    backup(pg, tools, str(directory), db, "--key-file", key_file)
    assert len(os.listdir(directory)) == 5  # and the cluster's marker
    return directory


@pytest.mark.parametrize("limit", ["--as", "--nofile"])
def test_prune_out_of_memory_or_descriptors_removes_nothing_and_blames_no_backup(tmp_path, key_file, two_runs,
                                                                                  limit):
    """A MemoryError while prune authenticated a backup was that backup's failure:
    `left NAME: failed verification: internal error: MemoryError` for each, status 65,
    as if the backups were damaged (EMFILE alike: `cannot read NAME`, 66; the
    directory's listing, 66 too). It is the run's: one line, 74, nothing removed, no
    backup named as failed."""
    import shutil

    prune = str(REPO / "scripts" / "encpipe-prune")
    # every step, not up to the first that works: where the allocation fails moves back and forth
    # where the first allocation fails depends on the interpreter and its site-packages (a venv's
    # prune passes from 30 MiB, the suite's own Python from about 35): 2 MiB steps up to 40, then 10.
    # Near the bottom the interpreter's own imports fail in ways of their own: "Fatal Python error"
    # (it cannot start), or a SystemError (its import system, a class statement: at 22 MiB, one run in two)
    steps = [s * MEBIBYTE for s in [*range(20, 40, 2), *range(40, 125, 10)]] if limit == "--as" else range(5, 30)
    seen, pruned = set(), 0
    for step in steps:
        directory = tmp_path / f"{step}"
        shutil.copytree(two_runs, directory)
        before = sorted(os.listdir(directory))
        # the interpreter itself (not a shim that would meet the limit first)
        argv = ["prlimit", f"{limit}={step}", "--", sys.executable, prune, "--dir", str(directory),
                "--keep-last", "1", "--key-file", key_file]
        done = subprocess.run(argv, capture_output=True, env=clean_env({"PYTHONPATH": str(REPO)}), timeout=WAIT)
        stderr = done.stderr.decode(errors="replace")
        if done.returncode == 0:
            assert len(os.listdir(directory)) == 3, step  # the newest run, and the marker
            pruned += 1
            continue
        if done.returncode == 1 and "Fatal Python error" in stderr:  # Python itself cannot start
            continue
        if done.returncode == 70 and "internal error: SystemError at " in stderr and step < 30 * MEBIBYTE:
            # the interpreter's own machinery under the limit, where Python barely starts (its import
            # system, a class statement): a SystemError, not a MemoryError; where it falls moves with
            # every change of what is imported first. Its one line; nothing removed, no backup blamed.
            assert_one_line(stderr, "encpipe-prune")
            assert sorted(os.listdir(directory)) == before, step
            continue
        seen.add(stderr)
        assert (done.returncode, done.stdout) == (74, b""), (step, stderr)
        assert_one_line(stderr, "encpipe-prune")
        assert "out of " in stderr or "Too many open files" in stderr, (step, stderr)
        assert sorted(os.listdir(directory)) == before, step
        shutil.rmtree(directory)
    assert seen and pruned, (seen, pruned)


# --- a file read when no descriptor is left (EMFILE) ---------------------------------------------

# In a child: RLIMIT_NOFILE lowered and every descriptor under it taken, then READER[0]
# reads the file at sys.argv[1]; prints the error's class, status and line.
_READ_WITH_NO_DESCRIPTOR = """
import os, resource, sys
from encpipe import commands, fdsecrets, keycheck, keys, safefile
from encpipe.errors import EncpipeError
readers = {
    "key file": lambda path: keys.read_secret_file(path, print),
    "secret file handed on": lambda path: fdsecrets._read_path("--key-file", path),
    "input file": lambda path: commands.open_input(path, None),
    "file opened safely": lambda path: safefile.open_source(path),
    "key file checked": lambda path: keycheck._openable(path, "--key-file"),
}
reader = readers[sys.argv[2]]
resource.setrlimit(resource.RLIMIT_NOFILE, (32, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
taken = []
while True:
    try:
        taken.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        break
try:
    reader(sys.argv[1])
except EncpipeError as e:
    print(type(e).__name__, e.exit_code, e)
else:
    print("read")
"""


@pytest.mark.parametrize("reader", ["key file", "secret file handed on", "input file", "file opened safely",
                                    "key file checked"])
def test_a_file_that_cannot_be_opened_for_want_of_descriptors_is_74_not_a_missing_file(reader, tmp_path):
    """Before, a key file, a secret file or an input that could not be opened because the
    process had no descriptor left said "cannot read FILE: Too many open files" with 66,
    the status of a file that is not there or not readable (encpipe-backup's run, out of
    descriptors while it loaded its key, exited 66). Now 74, as every resource that ran out."""
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    done = subprocess.run([sys.executable, "-c", _READ_WITH_NO_DESCRIPTOR, str(path), reader], cwd=REPO,
                          capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    kind, status, line = done.stdout.rstrip("\n").split(" ", 2)
    assert (kind, status) == ("IOFailure", "74"), done.stdout
    assert line.endswith(": Too many open files") and "cannot" in line, line


@pytest.mark.parametrize("number, status", [(errno.EMFILE, 74), (errno.ENFILE, 74), (errno.ENOMEM, 74),
                                            (errno.EAGAIN, 66), (errno.ENOENT, 66), (errno.EACCES, 66)])
def test_only_a_resource_run_out_makes_a_file_not_read_74(number, status):
    """errors.unreadable: descriptors or memory run out is 74; EAGAIN, a descriptor that
    would block (a secret's pipe too small to hold it), stays 66 as a file not read."""
    from encpipe.errors import unreadable

    error = unreadable("cannot read KEY", OSError(number, os.strerror(number)))
    assert (type(error).__name__, error.exit_code, str(error)) == (
        "IOFailure" if status == 74 else "InputUnavailable", status, "cannot read KEY")
