"""A key file that is a named FIFO (or another file that is not a regular one),
whose writer writes the key once (`mkfifo k; cat secret > k &`, a secrets
agent), given to a script that runs encpipe more than once: the script reads it
once, at its start, and lends each encpipe that names it a copy at /dev/fd/N,
as a secret given as /dev/fd/N (fdsecrets). A second open of the FIFO would wait
for ever for a writer that is gone: each run here is bounded, and a run that
does not end fails."""

import json
import os
import shlex
import signal
import subprocess
import sys
import threading

import pytest

from test_backup_dir import KEY, make_valid
from test_backup_restore import BACKUP, RESTORE, backup, dump, ensure_small, python_env, read_key, script_env
from test_migrate import HEX_KEY, MIGRATE, NEW_KEY, make_backups, open_new
from test_rotate import SCRIPT as ROTATE, World, lines, rotate_env
from cliutil import ok, reader_opened, run as encpipe_run
from spies import records, write

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
WAIT = 60


class OneShotWriter(threading.Thread):
    """Writes `data` to the first reader of the new FIFO `path`, then closes it and
    writes no more: a second reader would wait for ever."""

    def __init__(self, path, data):
        super().__init__(daemon=True)
        os.mkfifo(path, 0o600)
        self.path, self.data, self.stop, self.served = path, data, threading.Event(), 0
        self.start()

    def run(self):
        fd = reader_opened(self.path, self.stop)
        if fd is None:
            return
        os.set_blocking(fd, True)
        os.write(fd, self.data)
        os.close(fd)
        self.served += 1


def bounded(argv, writers=(), **kwargs):
    """`argv` run to its end within WAIT seconds (in a session of its own: a run that
    hangs is killed with every child it started, and fails the test)."""
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{os.path.basename(str(argv[0 if argv[0] != sys.executable else 1]))} did not end "
                    f"within {WAIT} s (a key file opened twice?)")
    finally:
        for writer in writers:
            writer.stop.set()
    for writer in writers:  # a reader that took the key and ended may end before its writer counts it
        writer.join(timeout=WAIT)
    assert all(writer.served == 1 for writer in writers)
    return proc.returncode, out, err


# --- encpipe-rotate ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["old", "new", "both", "same"])
def test_rotate_reads_a_key_file_that_is_a_fifo_once(tmp_path, which):
    """Old and new key files on one-shot FIFOs: every file rotated, by keyid, inspect,
    rewrap and inspect --verify. One FIFO given as both is read once too."""
    world = World(tmp_path)
    for name in ("a.enc", "b.enc"):
        world.add(name, "--key-file", world.old_a)
    old, new, writers = world.old_a, world.new, []
    if which == "same":  # one FIFO given as the old and the new key file: read once, refused (64)
        both = OneShotWriter(tmp_path / "both.fifo", (world.old_hex + "\n").encode())
        status, out, err = bounded([sys.executable, ROTATE, "--old-key-file", both.path, "--new-key-file", both.path,
                                    world.dir], [both], env=rotate_env())
        assert (status, out, err) == (64, b"", b"encpipe-rotate: error: a key is both old and new (or escrow)\n")
        return
    if which in ("old", "both"):
        writers.append(OneShotWriter(tmp_path / "old.fifo", (world.old_hex + "\n").encode()))
        old = writers[-1].path
    if which in ("new", "both"):
        writers.append(OneShotWriter(tmp_path / "new.fifo", (world.new_hex + "\n").encode()))
        new = writers[-1].path
    status, out, err = bounded([sys.executable, ROTATE, "--old-key-file", old, "--new-key-file", new, world.dir],
                               writers, env=rotate_env())
    assert (status, err) == (0, b"")
    report = lines(subprocess.CompletedProcess([], 0, out))
    assert {n: r["status"] for n, r in report.items()} == {"a.enc": "rotated", "b.enc": "rotated"}
    for name, data in world.plain.items():
        assert ok(encpipe_run(["open", "--key-file", world.new], (world.dir / name).read_bytes())) == data


def test_rotate_lends_a_fifo_s_key_to_encpipe_only_at_dev_fd_n(tmp_path):
    """Each encpipe child names the key as /dev/fd/N (never the FIFO, never the key
    itself) and gets a sealed copy at N; the key is in no child's arguments."""
    world = World(tmp_path)
    world.add("a.enc", "--key-file", world.old_a)
    spy, log = tmp_path / "encpipe-spy", tmp_path / "encpipe.log"
    write(spy, "encpipe", [sys.executable, "-m", "encpipe"], log)
    fifo = OneShotWriter(tmp_path / "new.fifo", (world.new_hex + "\n").encode())
    status, out, err = bounded([sys.executable, ROTATE, "--old-key-file", world.old_a, "--new-key-file", fifo.path,
                                world.dir], [fifo], env=rotate_env(ENCPIPE=str(spy)))
    assert (status, err) == (0, b"")
    children = records(log)
    assert [r["argv"][0] for r in children] == ["keyid", "keyid", "inspect", "rewrap", "inspect"]
    lent = set()
    for child in children:
        assert not any(world.new_hex in w or str(fifo.path) in w for w in child["argv"]), child["argv"]
        named = [w.partition("=")[2] for w in child["argv"] if w.partition("=")[2].startswith("/dev/fd/")]
        for path in named:
            assert child["fds"][path.rpartition("/")[2]] == "/memfd:encpipe-secret (deleted)", child
        lent.update(named)
        if child["argv"][:2] == ["keyid", f"--key-file={world.old_a}"]:
            assert not named and set(child["fds"]) == {"0", "1", "2"}, child  # the old key's keyid: no copy
    assert len(lent) == 1


# --- encpipe-migrate --------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["legacy", "new", "sign"])
def test_migrate_reads_a_key_file_that_is_a_fifo_once(tmp_path, which):
    directory = tmp_path / "d"
    expected = make_backups(directory, {"a_backup.sql.enc": "hex-key.sql.enc", "b_backup.sql.enc": "hex-key.sql.enc"},
                            python_made=False)
    legacy, new = tmp_path / "legacy.key", tmp_path / "new.key"
    legacy.write_text(HEX_KEY + "\n")
    new.write_text(NEW_KEY + "\n")
    for path in (legacy, new):
        path.chmod(0o600)
    extra, writers = [], []
    if which == "legacy":
        writers.append(OneShotWriter(tmp_path / "legacy.fifo", (HEX_KEY + "\n").encode()))
        legacy = writers[0].path
    elif which == "new":
        writers.append(OneShotWriter(tmp_path / "new.fifo", (NEW_KEY + "\n").encode()))
        new = writers[0].path
    else:
        signing = tmp_path / "sign.key"
        ok(encpipe_run(["keygen", "--sign", "-o", str(signing)]))
        writers.append(OneShotWriter(tmp_path / "sign.fifo", signing.read_bytes()))
        extra = ["--sign-key", writers[0].path]
    env = {**python_env(), "ENCPIPE": f"{shlex.quote(sys.executable)} -m encpipe"}
    status, out, err = bounded([sys.executable, MIGRATE, "--legacy-key-file", legacy, "--key-file", new, *extra,
                                directory], writers, env=env)
    assert (status, err) == (0, b""), err
    assert out.count(b'"migrated"') == 2
    for name in ("a_backup.sql.enc", "b_backup.sql.enc"):
        assert open_new(directory / name)  # opens under the new key
    assert set(expected) <= set(os.listdir(directory))


# --- encpipe-verify, encpipe-prune, encpipe-check: the keys are loaded once, in the script ----------


@pytest.mark.parametrize("script", ["encpipe-verify", "encpipe-prune", "encpipe-check"])
def test_the_backup_commands_read_a_key_file_that_is_a_fifo_once(tmp_path, script):
    directory = tmp_path / "b"
    directory.mkdir()
    for name in ("shop_20240101T000000Z.sql.enc", "shop_20240102T000000Z.sql.enc"):
        make_valid(directory, name)
    fifo = OneShotWriter(tmp_path / "key.fifo", (KEY.hex() + "\n").encode())
    before = sorted(os.listdir(directory))
    options = {"encpipe-verify": [], "encpipe-prune": ["--keep-last", "1", "--dry-run"],
               "encpipe-check": ["--max-age", "1000000", "--verify"]}[script]
    env = {k: v for k, v in python_env().items() if k != "ENCPIPE_KEY"}
    status, out, err = bounded([os.path.join(SCRIPTS, script), *options, "--key-file", fifo.path, directory],
                               [fifo], env=env)
    assert (status, err) == (0, b""), err
    assert out and sorted(os.listdir(directory)) == before


# --- encpipe-restore, encpipe-backup ------------------------------------------------------------------


def test_restore_reads_a_key_file_that_is_a_fifo_once_for_the_dump_and_its_globals_file(pg, tools, key_file,
                                                                                         tmp_path):
    db = ensure_small(pg, "fifokey_source")
    made, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    assert any(n.endswith(".globals.sql.enc") for n in os.listdir(tmp_path / "b"))
    pg.dropdb("fifokey_copy")
    fifo = OneShotWriter(tmp_path / "key.fifo", read_key(key_file).encode() + b"\n")
    status, out, err = bounded([RESTORE, "--key-file", fifo.path, made, "fifokey_copy"], [fifo],
                               env=script_env(pg, tools))
    assert status == 0, err
    assert dump(pg, "fifokey_copy") == dump(pg, db)
    pg.dropdb("fifokey_copy")


def test_restore_reads_a_signer_file_that_is_a_fifo_once(pg, tools, key_file, tmp_path):
    """--signer-file on a one-shot FIFO: read once, when the restore starts, its keys
    trusted for the dump and its globals file; one that holds another signer's key
    refuses the backup (67, nothing touched): the keys the FIFO gave are the ones used."""
    db = ensure_small(pg, "fifokey_signed")
    signing, other = tmp_path / "sign.key", tmp_path / "other.key"
    verify_key = ok(encpipe_run(["keygen", "--sign", "-o", str(signing)])).decode().strip()
    other_key = ok(encpipe_run(["keygen", "--sign", "-o", str(other)])).decode().strip()
    made, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file, "--sign-key", str(signing))
    for trusted, expected in ((other_key, 67), (verify_key, 0)):
        pg.dropdb("fifokey_copy")
        signer = OneShotWriter(tmp_path / f"signer-{expected}.fifo", (trusted + "\n").encode())
        status, out, err = bounded([RESTORE, "--key-file", key_file, "--signer-file", signer.path, made,
                                    "fifokey_copy"], [signer], env=script_env(pg, tools))
        assert (status, out) == (expected, b""), err
        if expected:
            assert "fifokey_copy" not in pg.psql("SELECT datname FROM pg_database").split()
    assert dump(pg, "fifokey_copy") == dump(pg, db)
    pg.dropdb("fifokey_copy")


@pytest.mark.parametrize("given", ["fifo", "/dev/fd/N"])
def test_backup_with_keep_reads_a_key_file_that_is_a_fifo_once(pg, tools, key_file, tmp_path, given):
    """It seals the dump and the globals file with the keys loaded once, then prunes with
    the same key file (a pipe at /dev/fd/N: read once too, empty the second time)."""
    db = ensure_small(pg, "fifokey_source")
    backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    secret = read_key(key_file).encode() + b"\n"
    if given == "fifo":
        fifo = OneShotWriter(tmp_path / "key.fifo", secret)
        writers, path, fds = [fifo], fifo.path, ()
    else:
        read_end, write_end = os.pipe()
        os.write(write_end, secret)
        os.close(write_end)
        writers, path, fds = [], "/dev/fd/%d" % read_end, (read_end,)
    status, out, err = bounded([BACKUP, "--dir", tmp_path / "b", "--keep-last", "1", "--key-file", path, db],
                               writers, env=script_env(pg, tools), pass_fds=fds)
    for fd in fds:
        os.close(fd)
    assert (status, err) == (0, b""), err
    assert json.loads(out)["filename"] in os.listdir(tmp_path / "b")
    made = sorted(n for n in os.listdir(tmp_path / "b") if n.startswith("fifokey_source_"))
    assert len(made) == 2 and any(n.endswith(".globals.sql.enc") for n in made), made  # the first run's pruned


def test_backup_with_keep_reads_a_sign_key_and_a_signer_file_that_are_fifos_once(pg, tools, key_file, tmp_path):
    """The --signer-file is read when the run starts and again by the prune; the signing
    key by the seal (both files signed)."""
    db = ensure_small(pg, "fifokey_signed")
    signing = tmp_path / "sign.key"
    verify_key = ok(encpipe_run(["keygen", "--sign", "-o", str(signing)])).decode().strip()
    backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file, "--sign-key", str(signing))
    sign = OneShotWriter(tmp_path / "sign.fifo", signing.read_bytes())
    signer = OneShotWriter(tmp_path / "signer.fifo", (verify_key + "\n").encode())
    status, out, err = bounded([BACKUP, "--dir", tmp_path / "b", "--keep-last", "1", "--key-file", key_file,
                                "--sign-key", sign.path, "--signer-file", signer.path, db], [sign, signer],
                               env=script_env(pg, tools))
    assert (status, err) == (0, b""), err
    made = sorted(n for n in os.listdir(tmp_path / "b") if n.startswith("fifokey_signed_"))
    assert len(made) == 2 and json.loads(out)["filename"] in made, made  # the first run's pruned
    for name in made:  # the dump and its globals file, each signed
        with open(tmp_path / "b" / name, "rb") as f:
            report = json.loads(ok(encpipe_run(["inspect", "--json"], f.read())))
        assert report["signers"] == ok(encpipe_run(["keyid", "--sign-key", str(signing)])).decode().split(), name


# --- a FIFO others may open -----------------------------------------------------------------------


def test_a_key_fifo_that_others_may_open_is_warned_of_as_a_file_is(tmp_path):
    """`mkfifo k` under umask 022 makes prw-r--r--: another user may open it first
    and read the key its writer writes once. encpipe warned only of a regular file
    others could read; now of a named FIFO too, once, in encpipe and in a script
    (a pipe's own mode, 0600, is never warned of)."""
    key_line = (KEY.hex() + "\n").encode()
    fifo = OneShotWriter(tmp_path / "key.fifo", key_line)
    os.chmod(fifo.path, 0o644)
    env = {k: v for k, v in python_env().items() if k != "ENCPIPE_KEY"}
    status, out, err = bounded([sys.executable, "-m", "encpipe", "seal", "--key-file", fifo.path], [fifo], env=env,
                               stdin=subprocess.DEVNULL)
    path = str(fifo.path)
    assert (status, err) == (0, f"encpipe: warning: {path} is readable by group or others: chmod 600 {path}\n".encode())
    (tmp_path / "rotate").mkdir()
    world = World(tmp_path / "rotate")
    world.add("a.enc", "--key-file", world.old_a)
    old = OneShotWriter(tmp_path / "old.fifo", (world.old_hex + "\n").encode())
    os.chmod(old.path, 0o640)
    status, out, err = bounded([sys.executable, ROTATE, "--old-key-file", old.path, "--new-key-file", world.new,
                                world.dir], [old], env=rotate_env())
    assert status == 0, err
    assert err.decode() == f"encpipe-rotate: warning: {old.path} is readable by group or others: chmod 600 {old.path}\n"
    pipe = subprocess.run(["bash", "-c", 'exec "$@" --key-file <(printf "%s\\n" "$KEY")', "x", sys.executable, "-m",
                           "encpipe", "seal"], env={**env, "KEY": KEY.hex()}, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=WAIT)
    assert (pipe.returncode, pipe.stderr) == (0, b"")


def test_only_a_secret_file_options_word_is_given_the_copys_number():
    """Only a secret-file option's PATH becomes /dev/fd/M (else lend() hands the secret to it)."""
    from encpipe.fdsecrets import FdSecrets

    secrets = FdSecrets({"key_file": ["/dev/null"]}, ("key_file",))
    lent = secrets.value("/dev/null")
    assert lent.startswith("/dev/fd/")
    assert secrets.words(["encpipe", "open", "--key-file=/dev/null", "--output=/dev/null", "--", "/dev/null"]) == [
        "encpipe", "open", f"--key-file={lent}", "--output=/dev/null", "--", "/dev/null"]
