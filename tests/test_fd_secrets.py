"""Secret files given as /dev/fd/N to the scripts that run encpipe more than once
(encpipe-restore, encpipe-rotate, encpipe-migrate), and encpipe-restore's
--passphrase-fd N: read once, the number kept reserved, and lent to each encpipe
child (and no other child) as a fresh copy at N.

Each secret here comes on the read end of a pipe whose write end is closed, as
from `--key-file /dev/fd/3 3< <(vault read ...)`: it can be read only once.
"""

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading

import pytest

import encpipe
from encpipe.compat import set_pipe_size
from encpipe.errors import InputUnavailable, UsageError
from encpipe.fdsecrets import MAX_SECRET, FdSecrets
from test_backup_restore import (
    BACKUP,
    RESTORE,
    backup,
    dump,
    ensure_small,
    python_env,
    read_key,
    run,
    script_env,
)
from test_migrate import HEX_KEY, MIGRATE, NEW_KEY, make_backups, open_new, sha
from spies import records, write
from test_restore_children import _assert_clean, _spies
from test_rotate import SCRIPT as ROTATE, World, lines, rotate_env
from cliutil import ok, run as encpipe_run

PASSPHRASE = "fd-secrets passphrase 41c9"


def pipe_holding(data):
    """The read end of a pipe that holds `data`, its write end closed."""
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    return read_end


@contextlib.contextmanager
def pipes(*contents):
    fds = [pipe_holding(data) for data in contents]
    try:
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


# --- encpipe-restore ------------------------------------------------------------------------------


def _passphrase_backup(pg, tools, directory, db, *options):
    return backup(pg, tools, directory, db, "--work-factor", "10", *options,
                  env_extra={"ENCPIPE_PASSPHRASE": PASSPHRASE})


@pytest.mark.parametrize("kind", ["key", "passphrase", "passphrase-fd", "passphrase-fd 0"])
def test_restore_reads_a_secret_on_a_pipe_once_for_the_dump_and_its_globals_file(pg, tools, key_file, tmp_path, kind):
    """A secret file given as /dev/fd/N, a --passphrase-fd N, a --passphrase-fd 0
    (standard input): each `encpipe open` (the globals file, the dump) gets it."""
    db = ensure_small(pg, "fdsecret_source")
    if kind == "key":
        option, secret = "--key-file", read_key(key_file).encode() + b"\n"
        made, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file)
    else:
        option, secret = "--passphrase-file" if kind == "passphrase" else "--passphrase-fd", PASSPHRASE.encode() + b"\n"
        made, _ = _passphrase_backup(pg, tools, str(tmp_path / "b"), db)
    assert any(n.endswith(".globals.sql.enc") for n in os.listdir(tmp_path / "b"))  # opened too, or 66
    pg.dropdb("fdsecret_copy")
    with pipes(secret) as (fd,):
        value = "0" if kind == "passphrase-fd 0" else str(fd) if option == "--passphrase-fd" else "/dev/fd/%d" % fd
        proc = run([RESTORE, option, value, made, "fdsecret_copy"], script_env(pg, tools), pass_fds=(fd,),
                   stdin=fd if value == "0" else None)
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, "fdsecret_copy") == dump(pg, db)
    assert b"globals" not in proc.stderr
    pg.dropdb("fdsecret_copy")


def _encpipe_spy(tmp_path):
    """(the command for ENCPIPE, its log): each encpipe a script runs records its
    arguments and its descriptors, then runs."""
    spy, log = tmp_path / "encpipe-spy", tmp_path / "encpipe.log"
    write(spy, "encpipe", [sys.executable, "-m", "encpipe"], log)
    return str(spy), log


@pytest.mark.parametrize("option", ["--key-file", "--passphrase-fd"])
def test_no_child_of_a_restore_but_encpipe_gets_the_descriptor(pg, tools, key_file, tmp_path, option):
    """psql and zstd get no descriptor but 0, 1 and 2; each `encpipe open` (the
    globals file, the dump) gets the option and value given, naming N, as one word
    (--key-file=/dev/fd/N: argwords), and a sealed copy of the secret at N, never
    the same N as a file it reads."""
    db = ensure_small(pg, "fdsecret_source")
    if option == "--key-file":
        secret = read_key(key_file)
        made, _ = backup(pg, tools, str(tmp_path / "b"), db, "--key-file", key_file, "--compress", "zstd")
    else:
        secret = PASSPHRASE
        made, _ = _passphrase_backup(pg, tools, str(tmp_path / "b"), db, "--compress", "zstd")
    spies, log = _spies(tmp_path, pg)
    env = script_env(pg, tools)
    env["PATH"] = "%s:%s" % (spies, env["PATH"])
    env["ENCPIPE"], encpipe_log = _encpipe_spy(tmp_path)
    pg.dropdb("fdsecret_copy")
    with pipes(secret.encode() + b"\n") as (fd,):
        given = [option, str(fd) if option == "--passphrase-fd" else "/dev/fd/%d" % fd]
        proc = run([RESTORE, *given, made, "fdsecret_copy"], env, pass_fds=(fd,))
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, "fdsecret_copy") == dump(pg, db)
    pg.dropdb("fdsecret_copy")
    _assert_clean(records(log), (secret,), {"psql", "zstd"})
    opened = records(encpipe_log)
    # a key file is read by `encpipe keyid` too (beside the opens that start early: in any order)
    assert sorted(r["argv"][0] for r in opened) == ["keyid", "open", "open"][option == "--passphrase-fd":]
    for record in opened:
        argv = record["argv"]
        assert [w for w in argv if w.startswith(option)] == ["=".join(given)], argv
        assert record["fds"][str(fd)] == "/memfd:encpipe-secret (deleted)", record["fds"]
        if argv[0] == "open":
            assert argv[-1].startswith("/dev/fd/") and argv[-1] != "/dev/fd/%d" % fd, argv  # FILE, at another number


def test_no_child_of_a_remote_custom_restore_but_encpipe_gets_the_descriptor(pg, tools, key_file, tmp_path, s3):
    """A custom archive (pg_restore) and its globals file fetched from a remote (rclone
    and its parent), the key on a pipe: psql, pg_restore and rclone get no descriptor
    but 0, 1 and 2, nor the key."""
    db = ensure_small(pg, "fdsecret_source")
    remote = f"{s3.location}/fdsecrets"
    env = script_env(pg, tools, **s3.env)
    proc = run([BACKUP, "--to", remote, "--format", "custom", "--key-file", key_file, db], env)
    assert proc.returncode == 0, proc.stderr.decode()
    name = json.loads(proc.stdout)["filename"]
    spies, log = _spies(tmp_path, pg)
    env["PATH"] = "%s:%s" % (spies, env["PATH"])
    env["RCLONE"] = str(spies / "rclone")
    pg.dropdb("fdsecret_copy")
    key = read_key(key_file)
    with pipes(key.encode() + b"\n") as (fd,):
        proc = run([RESTORE, "--key-file", "/dev/fd/%d" % fd, f"{remote}/{name}", "fdsecret_copy"], env,
                   pass_fds=(fd,))
    assert proc.returncode == 0, proc.stderr.decode()
    assert dump(pg, "fdsecret_copy") == dump(pg, db)
    pg.dropdb("fdsecret_copy")
    _assert_clean(records(log), (key,), {"psql", "pg_restore", "rclone"})


@pytest.mark.parametrize("option", ["--key-file", "--passphrase-fd"])
def test_a_file_to_restore_named_by_the_secret_s_descriptor_is_66_and_nothing_is_read(tmp_path, option):
    """FILE given as the /dev/fd/N of --key-file or as the N of --passphrase-fd: N
    holds /dev/null by then (the secret read once), never the secret, so FILE is
    not a regular file."""
    env = {**python_env(), "ENCPIPE": f"{shlex.quote(sys.executable)} -m encpipe", "ENCPIPE_PYTHON": sys.executable}
    with pipes(b"0" * 64 + b"\n") as (fd,):
        value = str(fd) if option == "--passphrase-fd" else "/dev/fd/%d" % fd
        proc = run([RESTORE, option, value, "/dev/fd/%d" % fd, "db"], env, pass_fds=(fd,), timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        66, b"", b"encpipe-restore: error: cannot read /dev/fd/%d: not a regular file; nothing was changed\n" % fd)


# --- encpipe-rotate -------------------------------------------------------------------------------


def test_rotate_reads_old_and_new_key_files_on_pipes_once_for_every_file(tmp_path):
    world = World(tmp_path)
    for name in ("a.enc", "b.enc", "c.enc"):
        world.add(name, "--key-file", world.old_a)
    old, new = (open(path, "rb").read() for path in (world.old_a, world.new))
    with pipes(old, new) as (old_fd, new_fd):
        done = subprocess.run([sys.executable, ROTATE, "--old-key-file", "/dev/fd/%d" % old_fd,
                               "--new-key-file", "/dev/fd/%d" % new_fd, str(world.dir)],
                              capture_output=True, env=rotate_env(), pass_fds=(old_fd, new_fd), timeout=120)
    assert done.returncode == 0, done.stderr
    assert {n: r["status"] for n, r in lines(done).items()} == dict.fromkeys(world.plain, "rotated")
    for name, data in world.plain.items():
        sealed = (world.dir / name).read_bytes()
        assert ok(encpipe_run(["open", "--key-file", world.new], sealed)) == data, name
        assert encpipe_run(["open", "--key-file", world.old_a], sealed)[:2] == (77, b""), name


# --- encpipe-migrate ------------------------------------------------------------------------------


@pytest.mark.parametrize("same", [False, True])
def test_migrate_reads_the_legacy_and_new_key_files_on_pipes_once(tmp_path, same):
    """The same descriptor given to two options is read once and lent to both."""
    directory = tmp_path / "d"
    expected = make_backups(directory, {"a_backup.sql.enc": "hex-key.sql.enc", "b_backup.sql.enc": "hex-key.sql.enc"})
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": python_env()["PYTHONPATH"],
           "ENCPIPE": f"{shlex.quote(sys.executable)} -m encpipe"}
    with pipes(HEX_KEY.encode() + b"\n", NEW_KEY.encode() + b"\n") as (old_fd, new_fd):
        new_fd = old_fd if same else new_fd
        done = subprocess.run([sys.executable, MIGRATE, "--legacy-key-file", "/dev/fd/%d" % old_fd,
                               "--key-file", "/dev/fd/%d" % new_fd, str(directory)],
                              capture_output=True, env=env, pass_fds=(old_fd, new_fd), timeout=120)
    assert done.returncode == 0, done.stderr
    report = {r["file"]: r["status"] for r in map(json.loads, done.stdout.splitlines())}
    assert {n: report[n] for n in expected} == dict.fromkeys(expected, "migrated")
    key = encpipe.RawKey(bytes.fromhex(HEX_KEY if same else NEW_KEY))
    for name, digest in expected.items():
        assert sha(open_new(str(directory / name), key)) == digest, name


# --- the limit, and the descriptor kept ---------------------------------------------------------


def _feed(fd, data):
    with contextlib.suppress(BrokenPipeError), os.fdopen(fd, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("script", ["restore", "rotate", "migrate"])
def test_a_secret_over_64_kib_on_a_descriptor_is_64_and_never_shown(tmp_path, script):
    secret = b"S3cr3t-" * (MAX_SECRET // 7 + 10)
    (tmp_path / "d").mkdir()
    env = {**python_env(), "ENCPIPE": f"{shlex.quote(sys.executable)} -m encpipe", "ENCPIPE_PYTHON": sys.executable}
    read_end, write_end = os.pipe()
    writer = threading.Thread(target=_feed, args=(write_end, secret))
    writer.start()
    path = "/dev/fd/%d" % read_end
    argv = {"restore": [RESTORE, "--key-file", path, tmp_path / "x_20260101T000000Z.sql.enc", "db"],
            "rotate": [sys.executable, ROTATE, "--old-key-file", path, "--new-key-file", path, tmp_path / "d"],
            "migrate": [sys.executable, MIGRATE, "--key-file", path, tmp_path / "d"]}[script]
    try:
        proc = run(argv, env, pass_fds=(read_end,), timeout=60)
    finally:
        os.close(read_end)
        writer.join()
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr
    assert b"--key-file: file descriptor %d holds more than 65536 bytes" % read_end in proc.stderr \
        or b"--old-key-file: file descriptor %d holds more than 65536 bytes" % read_end in proc.stderr, proc.stderr
    assert b"S3cr3t" not in proc.stderr and len(proc.stderr.splitlines()) <= 2


def test_a_closed_descriptor_is_66(tmp_path):
    (tmp_path / "d").mkdir()
    env = {**python_env(), "ENCPIPE": f"{shlex.quote(sys.executable)} -m encpipe"}
    proc = run([sys.executable, ROTATE, "--old-key-file", "/dev/fd/57", "--new-key-file", "/dev/fd/57",
                tmp_path / "d"], env, timeout=60)
    assert (proc.returncode, proc.stdout) == (66, b""), proc.stderr
    assert b"encpipe-rotate: error: --old-key-file: cannot read file descriptor 57" in proc.stderr


def test_the_descriptor_is_read_once_kept_reserved_and_lent_only_to_a_child_that_names_it(tmp_path):
    with pipes(b"key one\n", b"key two\n") as (one, two):
        given = {"--key-file": ["/dev/fd/%d" % one, "/proc/self/fd/%d" % one], "--identity": ["/dev/fd/%d" % two],
                 "--signer-file": ["/dev/fd/%d" % two], "--other": ["/dev/fd/%d" % two]}
        secrets = FdSecrets(given, ("--key-file", "--identity"))
        for fd in (one, two):  # /dev/null now: read, the secret is gone from it
            assert os.readlink("/proc/self/fd/%d" % fd) == "/dev/null"
            assert os.read(fd, 100) == b""
        opened = [os.open(tmp_path, os.O_RDONLY) for _ in range(8)]  # later files take other numbers
        assert not {one, two} & set(opened)
        for fd in opened:
            os.close(fd)
        child = [sys.executable, "-c", "import sys; print(open(sys.argv[1]).read(), end='')"]
        for argv, fd, content in ((["/dev/fd/%d" % one], one, "key one\n"),
                                  (["/proc/self/fd/%d" % one], one, "key one\n"),
                                  (["/dev/fd/%d" % two], two, "key two\n")):
            for _ in range(2):  # lent afresh each time
                with secrets.lend(["--key-file", *argv]) as lent:
                    assert lent == [fd]
                    out = subprocess.run(child + argv, capture_output=True, pass_fds=lent, text=True)
                assert (out.returncode, out.stdout) == (0, content), out.stderr
                assert os.readlink("/proc/self/fd/%d" % fd) == "/dev/null"
        with secrets.lend(["open", "/dev/fd/99"]) as lent:
            assert lent == []
            assert os.readlink("/proc/self/fd/%d" % one) == "/dev/null"


READ_THE_DESCRIPTOR = "import os, sys; print(os.read(int(sys.argv[-1].rpartition('=')[2]), 100).decode(), end='')"


def test_a_descriptor_option_is_read_from_where_it_stands_and_lent_to_a_child_that_names_it(tmp_path):
    """--passphrase-fd N is read as encpipe reads it (keys.read_fd: from where the
    descriptor stands, not reopened from the file's start), N kept reserved, and
    lent to a child whose argv gives the option N (two words or one) only."""
    path = tmp_path / "pass"
    path.write_bytes(b"skipped\nthe passphrase\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, len(b"skipped\n"), os.SEEK_SET)
        secrets = FdSecrets({"--passphrase-fd": [str(fd)]}, ("--key-file",), ("--passphrase-fd",))
        assert secrets.secrets == {fd: b"the passphrase\n"}
        assert os.readlink("/proc/self/fd/%d" % fd) == "/dev/null"
        for argv in (["--passphrase-fd", str(fd)], ["--passphrase-fd=%d" % fd]):
            for _ in range(2):  # lent afresh each time
                with secrets.lend(["open", *argv]) as lent:
                    assert lent == [fd]
                    out = subprocess.run([sys.executable, "-c", READ_THE_DESCRIPTOR, *argv], capture_output=True,
                                         pass_fds=lent, text=True)
                assert (out.returncode, out.stdout) == (0, "the passphrase\n"), out.stderr
                assert os.readlink("/proc/self/fd/%d" % fd) == "/dev/null"
        for argv in (["/dev/fd/%d" % fd], ["--key-file", str(fd)], [str(fd)], ["--passphrase-fd"]):
            with secrets.lend(argv) as lent:
                assert lent == [], argv
    finally:
        os.close(fd)


@pytest.mark.parametrize("fd, name", [(1, "output"), (2, "error")])
def test_a_passphrase_fd_on_standard_output_or_error_is_64_before_anything_is_read(fd, name):
    """encpipe-restore could not lend N there: an encpipe child's output and error are its own."""
    env = {**python_env(), "ENCPIPE": f"{shlex.quote(sys.executable)} -m encpipe", "ENCPIPE_PYTHON": sys.executable}
    proc = run([RESTORE, "--passphrase-fd", str(fd), "x_20260101T000000Z.sql.enc", "db"], env, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (64, b"", b"encpipe-restore: error: --passphrase-fd %d is "
                                                            b"standard %s: give the secret on another descriptor\n"
                                                            % (fd, name.encode()))


def test_the_limit_and_an_unreadable_descriptor_name_the_option_never_the_content(tmp_path):
    secret = b"k" * (MAX_SECRET + 1)
    path = tmp_path / "big"
    path.write_bytes(secret)
    with open(path, "rb") as f:
        with pytest.raises(UsageError) as e:
            FdSecrets({"--sign-key": ["/dev/fd/%d" % f.fileno()]}, ("--sign-key",))
        assert str(e.value) == "--sign-key: file descriptor %d holds more than 65536 bytes; not a key or passphrase" \
            % f.fileno()
    path.write_bytes(secret[:-1])
    with open(path, "rb") as f:
        fd = f.fileno()
        secrets = FdSecrets({"new_key_file": ["/dev/fd/%d" % fd]}, ("new_key_file",))
        assert secrets.secrets == {fd: secret[:-1]}  # exactly the limit: taken, and lent whole
        with secrets.lend(["/dev/fd/%d" % fd]):
            assert os.read(fd, MAX_SECRET + 1) == secret[:-1]
    with pytest.raises(InputUnavailable) as e:
        FdSecrets({"new_key_file": ["/dev/fd/%d" % fd]}, ("new_key_file",))
    assert str(e.value).startswith("--new-key-file: cannot read file descriptor %d: " % fd)


READ_TWICE = "import sys; print(open(sys.argv[1]).read() + '|' + open(sys.argv[1]).read(), end='')"


def test_a_child_may_open_the_lent_copy_twice_and_cannot_change_it():
    """encpipe-rotate's rewrap names the new key file to --key-file and --add-key-file."""
    with pipes(b"the key\n") as (fd,):
        secrets = FdSecrets({"key_file": ["/dev/fd/%d" % fd]}, ("key_file",))
        path = "/dev/fd/%d" % fd
        with secrets.lend([path]) as lent:
            out = subprocess.run([sys.executable, "-c", READ_TWICE, path], capture_output=True, pass_fds=lent,
                                 text=True)
            assert (out.returncode, out.stdout) == (0, "the key\n|the key\n"), out.stderr
            assert os.stat(path).st_mode & 0o777 == 0o400
            with pytest.raises(OSError):
                os.write(fd, b"x")  # sealed: what the next child reads is the secret as read
        assert os.readlink("/proc/self/fd/%d" % fd) == "/dev/null"


def test_without_memfd_the_copy_is_a_pipe(monkeypatch):
    monkeypatch.delattr(os, "memfd_create")
    with pipes(b"the key\n") as (fd,):
        secrets = FdSecrets({"key_file": ["/dev/fd/%d" % fd]}, ("key_file",))
        path = "/dev/fd/%d" % fd
        for _ in range(2):
            with secrets.lend([path]) as lent:
                assert os.readlink("/proc/self/fd/%d" % fd).startswith("pipe:")
                out = subprocess.run([sys.executable, "-c", "import sys; print(open(sys.argv[1]).read(), end='')",
                                      path], capture_output=True, pass_fds=lent, text=True)
            assert (out.returncode, out.stdout) == (0, "the key\n"), out.stderr


# --- descriptors that are not a secret's file -----------------------------------------------------


def _rotate_with_old_key_on(fd, world):
    return subprocess.Popen([sys.executable, ROTATE, "--old-key-file", "/dev/fd/%d" % fd, "--new-key-file", world.new,
                             str(world.dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=rotate_env(),
                            pass_fds=(fd,))


@pytest.mark.parametrize("what", ["directory", "/dev/zero"])
def test_a_descriptor_on_a_directory_or_an_endless_file_is_refused_at_once(tmp_path, what):
    world = World(tmp_path)
    world.add("a.enc", "--key-file", world.old_a)
    fd = os.open(world.dir if what == "directory" else "/dev/zero", os.O_RDONLY)
    try:
        proc = _rotate_with_old_key_on(fd, world)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(fd)
    expected = {"directory": (66, b"encpipe-rotate: error: --old-key-file: cannot read file descriptor %d: Is a "
                                  b"directory\n" % fd),
                "/dev/zero": (64, b"encpipe-rotate: error: --old-key-file: file descriptor %d holds more than 65536 "
                                  b"bytes; not a key or passphrase\n" % fd)}[what]
    assert (proc.returncode, out, err) == (*expected[:1], b"", expected[1])
    assert (world.dir / "a.enc").read_bytes() == world.originals["a.enc"]


def test_a_pipe_whose_writer_never_closes_waits_as_encpipe_would_and_sigterm_ends_it(tmp_path):
    """encpipe itself reads a key file to its end, so it waits too; nothing is
    rotated meanwhile, and SIGTERM ends the wait with nothing written."""
    world = World(tmp_path)
    world.add("a.enc", "--key-file", world.old_a)
    read_end, write_end = os.pipe()
    os.write(write_end, open(world.old_a, "rb").read())
    try:
        proc = _rotate_with_old_key_on(read_end, world)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.communicate(timeout=3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert (proc.returncode, out, err) == (-signal.SIGTERM, b"", b"")
    assert (world.dir / "a.enc").read_bytes() == world.originals["a.enc"]


def test_a_key_file_others_can_read_is_warned_about_through_a_descriptor_as_by_its_path(tmp_path):
    world = World(tmp_path)
    world.add("a.enc", "--key-file", world.old_a)
    os.chmod(world.old_a, 0o644)
    fd = os.open(world.old_a, os.O_RDONLY)
    try:
        done = subprocess.run([sys.executable, ROTATE, "--old-key-file", "/dev/fd/%d" % fd, "--new-key-file",
                               world.new, str(world.dir)], capture_output=True, env=rotate_env(), pass_fds=(fd,),
                              timeout=120)
    finally:
        os.close(fd)
    assert done.returncode == 0, done.stderr
    assert b"/dev/fd/%d is readable by group or others" % fd in done.stderr


def test_a_descriptor_given_to_passphrase_fd_and_as_a_key_file_is_refused(capsys):
    """Read once, N would be one secret for both, read by two rules (a descriptor from
    where it stands, a file from its start), a passphrase and a key file at once:
    the pair is refused before anything is read or opened, 64, one line."""
    from encpipe.pgrestore import main

    fd = pipe_holding(b"0" * 64 + b"\n")
    try:
        status = main(["--passphrase-fd", str(fd), "--key-file", "/dev/fd/%d" % fd, "x_20260101T000000Z.sql.enc", "db"])
        out, err = capsys.readouterr()
        assert (status, out) == (64, "")
        assert err == ("encpipe-restore: error: file descriptor %d is given to --passphrase-fd and to --key-file: "
                       "give each secret its own\n" % fd)
        assert os.read(fd, 100) == b"0" * 64 + b"\n"  # not read
    finally:
        os.close(fd)


def test_encpipe_restore_refuses_one_passphrase_fd_given_twice(capsys):
    """As encpipe and encpipe-backup do (README: one --passphrase-fd N given twice
    is 64 before anything is read): before, encpipe-restore read N once, went on to
    the server, and only each encpipe child it lent N to refused the pair."""
    from encpipe.pgrestore import main

    fd = pipe_holding(b"the passphrase\n")
    try:
        status = main(["--passphrase-fd", str(fd), "--passphrase-fd", str(fd), "x_20260101T000000Z.sql.enc", "db"])
        out, err = capsys.readouterr()
        assert (status, out) == (64, "")
        assert err == ("encpipe-restore: error: --passphrase-fd %d is given twice: a descriptor holds one "
                       "passphrase, read once\n" % fd)
        assert os.read(fd, 100) == b"the passphrase\n"  # not read
    finally:
        os.close(fd)


@pytest.mark.parametrize("option", ["--key-file", "--passphrase-file", "--sign-key"])
def test_encpipe_backup_refuses_a_descriptor_given_to_passphrase_fd_and_as_a_secret_file(capsys, tmp_path, option):
    """encpipe-backup read N as the secret file, then as the passphrase, and closed it:
    the secret file was then read from whatever took N next (DIR: `cannot read
    /dev/fd/N: Is a directory`, 66, after the dump had begun). Refused, 64, one
    line, before anything is read or made, as encpipe-restore does."""
    from encpipe.pgbackup import main

    fd = pipe_holding(b"0" * 64 + b"\n")
    try:
        status = main(["encpipe-backup", "--dir", str(tmp_path / "out"), "--passphrase-fd", str(fd),
                       f"{option}=/dev/fd/{fd}", "db"])
        out, err = capsys.readouterr()
        assert (status, out) == (64, "")
        assert err == (f"encpipe-backup: error: file descriptor {fd} is given to --passphrase-fd and to {option}: "
                       "give each secret its own\n")
        assert os.read(fd, 100) == b"0" * 64 + b"\n"  # not read
        assert not (tmp_path / "out").exists()
    finally:
        os.close(fd)


def test_migrate_warns_once_of_a_key_file_others_can_read_given_through_a_descriptor(tmp_path):
    """As rotate: the warning comes from the file read at N (now /dev/null there),
    once for the run, never from the encpipe children it lends the copy to."""
    directory = tmp_path / "d"
    make_backups(directory, {"a_backup.sql.enc": "hex-key.sql.enc", "b_backup.sql.enc": "hex-key.sql.enc"})
    legacy, new = tmp_path / "legacy.key", tmp_path / "new.key"
    legacy.write_text(HEX_KEY + "\n")
    new.write_text(NEW_KEY + "\n")
    legacy.chmod(0o600)
    new.chmod(0o644)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": python_env()["PYTHONPATH"],
           "ENCPIPE": f"{shlex.quote(sys.executable)} -m encpipe"}
    fd = os.open(new, os.O_RDONLY)
    try:
        done = subprocess.run([sys.executable, MIGRATE, "--legacy-key-file", str(legacy), "--key-file",
                               "/dev/fd/%d" % fd, str(directory)], capture_output=True, env=env, pass_fds=(fd,),
                              timeout=120)
    finally:
        os.close(fd)
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode().splitlines() == [
        "encpipe-migrate: warning: /dev/fd/%d is readable by group or others: chmod 600 /dev/fd/%d" % (fd, fd)]


def test_encpipe_backup_holds_a_long_passphrase_whatever_a_new_pipe_holds(monkeypatch, tmp_path):
    """encpipe-backup reads a --passphrase-fd once and hands it to its own key loading
    again. It wrote it whole into a new pipe, which nothing read yet: a pipe of a user
    over pipe-user-pages-soft holds two pages (8 KiB), and a passphrase longer than
    that (up to MAX_SECRET) waited there for ever. A pipe here holds one page; the
    passphrase is read as given, whatever a pipe holds."""
    from encpipe import pgbackup

    real_pipe = os.pipe

    def small_pipe():  # what a user over pipe-user-pages-soft gets (non-blocking here: an error, not a hang)
        r, w = real_pipe()
        set_pipe_size(w, 4096)
        os.set_blocking(w, False)
        return r, w

    o = pgbackup.parse(["--dir", str(tmp_path / "b"), "--passphrase-fd", "3", "shop"])
    passphrase = b"p" * (MAX_SECRET - 1) + b"\n"
    seen = []
    monkeypatch.setattr(pgbackup, "load_keys", lambda loader, args, sources, sealing: seen.extend(
        loader.load(sources, sealing=False)) or [])
    monkeypatch.setattr(os, "pipe", small_pipe)
    try:
        pgbackup.Backup(o, [passphrase], encpipe.cli.Io(None, None, sys.stderr, {})).sealer()
    finally:
        monkeypatch.undo()
    assert [k.secret for k in seen] == [passphrase[:-1]]


@pytest.mark.parametrize("script", ["backup", "restore"])
def test_a_passphrase_descriptor_open_on_a_file_others_can_read_is_warned_of_by_the_script(tmp_path, script):
    """encpipe-backup and encpipe-restore read a --passphrase-fd themselves (restore lends
    each encpipe a copy, with ENCPIPE_MODE_WARNED: they say nothing of it): a file
    others can read there is warned of as encpipe warns of it, once, before anything
    runs. Before, neither said a word of it, whereas --passphrase-file FILE warned."""
    path = tmp_path / "pass"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o644)
    sealed = tmp_path / "shop_20260101T000000Z.sql.enc"
    sealed.write_bytes(b"not read")
    argv = ([BACKUP, "--dir", str(tmp_path / "b")] if script == "backup" else [RESTORE]) + ["--passphrase-fd", "7"]
    argv += ["shop"] if script == "backup" else [str(sealed), "shop"]
    env = {**python_env(), "PGHOST": str(tmp_path / "no-server"), "PATH": os.path.dirname(sys.executable) + os.pathsep
           + os.environ["PATH"], "ENCPIPE_PYTHON": sys.executable}
    done = run(["bash", "-c", 'exec "$@" 7<"$0"', path, *argv], env, stdin=subprocess.DEVNULL)
    assert done.returncode != 0  # no server
    lines = done.stderr.decode().splitlines()
    warning = (f"encpipe-{script}: warning: file descriptor 7 is readable by group or others: "
               "chmod 600 the file it reads")
    assert lines[0] == warning, lines
    assert lines.count(warning) == 1, lines


@pytest.mark.parametrize("fd", [1, 2])
def test_a_secret_file_on_standard_output_or_error_is_left_as_it_is(tmp_path, fd):
    """Never read here nor replaced by /dev/null: the script's own output and errors stay."""
    code = ("import sys; from encpipe.fdsecrets import FdSecrets; "
            f"s = FdSecrets({{'key_file': ['/dev/fd/{fd}']}}, ('key_file',)); "
            f"print('still here', sorted(s.secrets), file=sys.stdout if {fd} == 1 else sys.stderr)")
    out = tmp_path / "out"
    with open(out, "w+b") as f:
        done = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL, timeout=30,
                              **({"stdout": f, "stderr": subprocess.PIPE} if fd == 1 else
                                 {"stderr": f, "stdout": subprocess.PIPE}))
    assert done.returncode == 0 and out.read_text() == "still here []\n", (done, out.read_text())
