"""Fail closed where nothing else looked: on any failure, one `PROG: error:` line
(and at most one hint), a documented exit status, nothing on standard output,
no traceback, and nothing left behind (a key file that was never handed out,
a half-written one)."""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cliutil import assert_one_line_error
from fuzz.craft import clean_env, command

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
KEY = "3e" * 32
WAIT = 60
NOT_UTF8 = os.fsdecode(b"sh\xffp")  # as Python hands over argv bytes that are not UTF-8

# A 4 KiB tmpfs, filled, in a private mount namespace: the command runs on a full
# disk; what is left in the directory is listed beside it, in DIR.after.
FULL_DISK = ('mount -t tmpfs -o size=4k encpipe-test "$1" && { head -c 8192 /dev/zero > "$1/fill" 2>/dev/null; '
             'dir=$1; shift; "$@"; status=$?; ls -A "$dir" > "$dir.after"; exit $status; }')


def _can_mount_tmpfs(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        done = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=4k encpipe-test "$1"', "sh",
                               str(probe)], capture_output=True, timeout=WAIT)
    except OSError:
        return False
    return done.returncode == 0


@pytest.fixture()
def full_disk(tmp_path):
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("needs a private mount namespace (unshare -m, as root)")
    mount = tmp_path / "full"
    mount.mkdir()

    def run(*args):
        argv = ["unshare", "-m", "sh", "-c", FULL_DISK, "sh", str(mount), *command(*args)]
        done = subprocess.run(argv, capture_output=True, env=clean_env({"PYTHONPATH": str(REPO)}), timeout=WAIT)
        return done, sorted((tmp_path / "full.after").read_text().split())

    return mount, run


@pytest.mark.parametrize("kind", [[], ["--x25519"], ["--sign"]], ids=["raw", "x25519", "sign"])
def test_keygen_on_a_full_disk_leaves_no_key_file(full_disk, kind):
    """The key file is created (O_EXCL) before its bytes are written: a write that
    fails removes it, or an empty `key` would stay, and the next `keygen -o key`
    would refuse to overwrite it."""
    mount, run = full_disk
    done, left = run("keygen", *kind, "-o", str(mount / "key"))
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    assert_one_line_error(done.stderr)
    assert "No space left on device" in done.stderr.decode()
    assert left == ["fill"]


@pytest.mark.parametrize("kind", ["--x25519", "--sign"])
@pytest.mark.parametrize("fault", ["disk full", "stdout closed", "reader gone"])
def test_keygen_whose_public_key_cannot_be_printed_keeps_no_secret_key(tmp_path, kind, fault):
    """`keygen --x25519 -o id > id.pub`: when the public key cannot be written, the
    identity it belongs to is removed again; a status other than 0 leaves nothing."""
    target = tmp_path / "id"
    argv = command("keygen", kind, "-o", str(target))
    env = clean_env({"PYTHONPATH": str(REPO)})
    if fault == "disk full":
        with open("/dev/full", "wb") as full:
            done = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, env=env, timeout=WAIT)
        assert done.returncode == 74, done.stderr
        assert_one_line_error(done.stderr)
    elif fault == "stdout closed":
        done = subprocess.run(argv, stderr=subprocess.PIPE, env=env, timeout=WAIT, preexec_fn=lambda: os.close(1))
        assert done.returncode == 74, done.stderr
        assert_one_line_error(done.stderr)
    else:
        read, write = os.pipe()
        os.close(read)
        try:
            done = subprocess.run(argv, stdout=write, stderr=subprocess.PIPE, env=env, timeout=WAIT)
        finally:
            os.close(write)
        assert (done.returncode, done.stderr) == (-13, b"")
    assert os.listdir(tmp_path) == []


def _script(name, *args, env=None):
    """A script run with no server to reach: what is refused must be refused before."""
    full = clean_env({"PYTHONPATH": str(REPO), "ENCPIPE_KEY": KEY, "PGHOST": "/nonexistent", **(env or {})})
    return subprocess.run([str(SCRIPTS / name), *args], capture_output=True, env=full, timeout=WAIT)


@pytest.mark.parametrize("args", [
    ["FILE", NOT_UTF8],
    ["--maintenance-db", NOT_UTF8, "FILE", "shop"],
    ["--drop-pre-restore-older-than", "1", NOT_UTF8],
    ["--list-pre-restore", "--maintenance-db", NOT_UTF8],
], ids=["DBNAME", "maintenance-db", "drop DBNAME", "list maintenance-db"])
def test_restore_refuses_a_database_name_that_is_not_utf8(backup_file, args):
    """The names go into SQL, sent as UTF-8: bytes that are not UTF-8 were a
    traceback (UnicodeEncodeError) once the first statement was built."""
    done = _script("encpipe-restore", *[backup_file if a == "FILE" else a for a in args])
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert_one_line_error(done.stderr, "encpipe-restore")
    assert b"not UTF-8" in done.stderr and b"sh\\xffp" in done.stderr


def test_backup_refuses_a_database_name_that_is_not_utf8(tmp_path):
    """Refused before pg_dump runs, as any other unusable DBNAME, not an encoding
    error in the middle of sealing the globals after pg_dump started."""
    done = _script("encpipe-backup", "--dir", str(tmp_path / "b"), NOT_UTF8)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert_one_line_error(done.stderr, "encpipe-backup")
    assert b"not UTF-8" in done.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("days", ["nan", "inf", "-1", "1e400", "\u0661", "1_0", " 1", "+1", "1e1"])
def test_restore_drop_pre_restore_older_than_needs_a_number_of_days(days):
    """`nan` or `inf` days silently dropped nothing, `-1` as much as `0`: all of them."""
    done = _script("encpipe-restore", "--drop-pre-restore-older-than", days)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert_one_line_error(done.stderr, "encpipe-restore")
    assert "--drop-pre-restore-older-than must be a number of days".encode() in done.stderr


@pytest.mark.parametrize("fault", ["disk full", "stdout closed"])
def test_sh_setup_run_with_an_output_it_cannot_write_is_74(tmp_path, fault):
    """`encpipe-sh-setup`, run rather than sourced, prints its header: an output
    that cannot be written was sed's message and status 0."""
    argv = [str(SCRIPTS / "encpipe-sh-setup")]
    if fault == "disk full":
        with open("/dev/full", "wb") as full:
            done = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, timeout=WAIT)
    else:
        done = subprocess.run(argv, stderr=subprocess.PIPE, timeout=WAIT, preexec_fn=lambda: os.close(1))
    assert done.returncode == 74, done.stderr
    assert_one_line_error(done.stderr, "encpipe-sh-setup")
    assert b"cannot write output" in done.stderr


def test_sh_setup_whose_reader_left_dies_quietly_of_sigpipe():
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([str(SCRIPTS / "encpipe-sh-setup")], stdout=write, stderr=subprocess.PIPE, timeout=WAIT)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) in ((141, b""), (-13, b""))


@pytest.mark.parametrize("script", ["encpipe-backup", "encpipe-restore"])
@pytest.mark.parametrize("python", ["/nonexistent/python3", "/", "python3 -I", "NOT EXECUTABLE"])
def test_an_encpipe_python_that_cannot_run_is_66(tmp_path, script, python):
    """ENCPIPE_PYTHON names the Python the shell scripts run: one that cannot be run
    was bash's own message (one or two lines) and status 126 or 127."""
    if python == "NOT EXECUTABLE":
        python = str(tmp_path / "python3")
        Path(python).write_text("#!/bin/sh\n")
    done = _script(script, "--help", env={"ENCPIPE_PYTHON": python})
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert_one_line_error(done.stderr, script)
    assert b"ENCPIPE_PYTHON" in done.stderr


@pytest.mark.parametrize("encpipe", ["DIRECTORY", "NOT EXECUTABLE", "/nonexistent/encpipe"])
def test_rotate_with_an_encpipe_that_cannot_run_is_66(tmp_path, backup_file, encpipe):
    """ENCPIPE names the command rotate runs: a directory or a file that cannot be
    executed was a traceback (PermissionError), only a missing one was 66."""
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    old.write_text(KEY + "\n")
    new.write_text("4f" * 32 + "\n")
    for private in (old, new):  # else one warning each (README, "Where keys come from") before the error
        private.chmod(0o600)
    if encpipe == "DIRECTORY":
        encpipe = str(tmp_path)
    elif encpipe == "NOT EXECUTABLE":
        encpipe = str(old)
    done = _script("encpipe-rotate", "--old-key-file", str(old), "--new-key-file", str(new),
                   os.path.dirname(backup_file), env={"ENCPIPE": encpipe})
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert_one_line_error(done.stderr, "encpipe-rotate")
    assert f"cannot run encpipe: {encpipe}".encode() in done.stderr


def test_rotate_with_an_encpipe_that_prints_no_report_fails_that_file(tmp_path, backup_file):
    """An ENCPIPE that runs but is not encpipe (it prints nothing): the file is an
    error (exit 1), not a JSONDecodeError traceback."""
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    old.write_text(KEY + "\n")
    new.write_text("4f" * 32 + "\n")
    before = Path(backup_file).read_bytes()
    done = _script("encpipe-rotate", "--old-key-file", str(old), "--new-key-file", str(new),
                   os.path.dirname(backup_file), env={"ENCPIPE": f"{shlex.quote(sys.executable)} -c pass"})
    assert done.returncode == 1, done.stderr
    assert b"Traceback" not in done.stderr and b"no JSON report" in done.stderr + done.stdout
    assert Path(backup_file).read_bytes() == before


@pytest.mark.parametrize("args", [
    ["--compress", "gzip", "--compress-level", "0"],
    ["--compress", "gzip", "--compress-level", "10"],
    ["--compress", "zstd", "--compress-level", "23"],
    ["--compress", "zstd", "--compress-level", "99999999999999999999"],
    ["--compress", "zstd", "--compress-threads", "201"],
    ["--compress", "zstd", "--compress-threads", "99999999999999999999"],
], ids=lambda a: " ".join(a[1:]))
def test_backup_refuses_a_compression_setting_its_compressor_refuses(tmp_path, args):
    """Refused (64, one line) before anything runs: gzip -10 or zstd -T2^64 failed only
    once pg_dump ran, with the compressor's own two lines and a failed backup."""
    if "zstd" in args and not shutil.which("zstd"):
        pytest.skip("zstd is not installed")
    done = _script("encpipe-backup", "--dir", str(tmp_path / "b"), *args, "shop")
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert_one_line_error(done.stderr, "encpipe-backup")
    assert b"--compress-level is 0 to 22 for zstd, 1 to 9 for gzip" in done.stderr
    assert not (tmp_path / "b").exists()


def test_backup_refuses_a_database_name_longer_than_postgresql_takes(tmp_path):
    """The server took its first 63 bytes, another database's name: the backup ran, 0,
    and its globals file then failed verification (another database's), never counted."""
    name = "shop_" + "x" * 59  # 64 bytes
    done = _script("encpipe-backup", "--dir", str(tmp_path / "b"), name)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert_one_line_error(done.stderr, "encpipe-backup")
    assert b"database name %s is longer than PostgreSQL's 63 bytes" % name.encode() in done.stderr
    assert not (tmp_path / "b").exists()
    assert _script("encpipe-backup", "--dir", str(tmp_path / "b"), "--help").returncode == 0


@pytest.mark.parametrize("args, said", [
    (["--format", "custom", "--compress", "none"], "--compress none is for plain dumps"),
    (["--format", "custom", "--compress-level", "9"], "--compress-level is for plain dumps"),
    (["--format", "custom", "--compress-threads", "2"], "--compress-threads is for plain dumps"),
    (["--compress", "none", "--compress-level", "19"], "--compress-level is for zstd and gzip, not --compress none"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else None)
def test_backup_refuses_a_compression_setting_it_would_not_use(tmp_path, args, said):
    """Taken, and not used: a custom archive came out compressed at pg_dump's level
    whatever --compress or --compress-level said, status 0."""
    done = _script("encpipe-backup", "--dir", str(tmp_path / "b"), *args, "shop")
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert_one_line_error(done.stderr, "encpipe-backup")
    assert said.encode() in done.stderr, done.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.skipif(not shutil.which("rclone"), reason="needs rclone")
def test_restore_of_a_remote_that_cannot_be_fetched_is_one_line(tmp_path):
    """The fetch helper's own error line (which named itself encpipe-backup) is folded
    into restore's one line, as the other scripts report a remote they cannot list."""
    done = _script("encpipe-restore", "nosuchremote:dir/shop_20260101T000000Z.sql.enc", "shop",
                   env={"RCLONE_CONFIG": str(tmp_path / "none.conf"), "TMPDIR": str(tmp_path)})
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert_one_line_error(done.stderr, "encpipe-restore")
    assert b"cannot fetch nosuchremote:dir/shop_20260101T000000Z.sql.enc: cannot list" in done.stderr
    assert b"nothing was changed" in done.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args", [["open"], ["seal", "-o", "OUT"], ["inspect"], ["rewrap"]], ids=lambda a: a[0])
def test_stdin_a_directory_fails_before_encpipe_runs_and_writes_nothing(tmp_path, args):
    """Python itself refuses to start with a directory as standard input (its own
    message, status 1: README "Exit status"); encpipe never runs, so nothing is written."""
    out = tmp_path / "out"
    directory = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        done = subprocess.run(command(*[str(out) if a == "OUT" else a for a in args]), stdin=directory,
                              capture_output=True, env=clean_env({"PYTHONPATH": str(REPO), "ENCPIPE_KEY": KEY}),
                              timeout=WAIT)
    finally:
        os.close(directory)
    assert (done.returncode, done.stdout) == (1, b""), done.stderr
    assert b"is a directory" in done.stderr and os.listdir(tmp_path) == []


@pytest.mark.parametrize("fd", [1, 2])
def test_stdout_or_stderr_a_directory_fails_before_encpipe_runs_and_writes_nothing(tmp_path, fd):
    """So does a directory as standard output or error (`1<DIR`): `init_sys_streams`."""
    out = tmp_path / "out"
    plain = tmp_path / "plain"
    plain.write_bytes(b"data")
    directory = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with open(plain, "rb") as src:
            done = subprocess.run(command("seal", "-o", str(out)), stdin=src, pass_fds=(directory,),
                                  env=clean_env({"PYTHONPATH": str(REPO), "ENCPIPE_KEY": KEY}), timeout=WAIT,
                                  **{("stdout" if fd == 1 else "stderr"): directory},
                                  **{("stderr" if fd == 1 else "stdout"): subprocess.PIPE})
    finally:
        os.close(directory)
    assert done.returncode == 1 and (fd == 2 and done.stdout == b"" or b"init_sys_streams" in done.stderr), done
    assert sorted(os.listdir(tmp_path)) == ["plain"]


@pytest.mark.parametrize("args", [["--work-factor", "2"], ["--work-factor", "x"], ["--chunk-size", "3"],
                                  ["--chunk-size", "99G"]], ids=lambda a: " ".join(a))
def test_migrate_refuses_a_bad_sealing_option_before_any_file(tmp_path, args):
    """A --work-factor or --chunk-size that `encpipe seal` refuses was found once per
    file, each decrypted first, each a "failed" line; now 64 before any file is read."""
    from test_backup_restore import make_legacy_file

    folder = tmp_path / "backups"
    folder.mkdir(mode=0o700)
    legacy = make_legacy_file(folder / "shop_20250101T000000Z.sql.enc", "ab" * 32, b"SELECT 1;\n")
    before = Path(legacy).read_bytes()
    done = _script("encpipe-migrate", *args, str(folder), env={"BACKUP_ENCRYPTION_KEY": "ab" * 32})
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert_one_line_error(done.stderr, "encpipe-migrate")
    assert args[0].encode() in done.stderr
    assert Path(legacy).read_bytes() == before and os.listdir(folder) == [os.path.basename(legacy)]


@pytest.mark.parametrize("script, args", [
    ("encpipe-list", ["REMOTE"]), ("encpipe-prune", ["--keep-last", "1", "REMOTE"]),
    ("encpipe-verify", ["REMOTE/shop_20260101T000000Z.sql.enc"]),
    ("encpipe-restore", ["REMOTE/shop_20260101T000000Z.sql.enc", "shop"]),
])
@pytest.mark.parametrize("rclone", ["/nonexistent/rclone", "DIRECTORY", "rclone --verbose"])
def test_an_rclone_that_cannot_run_is_66_and_named(tmp_path, script, args, rclone):
    """RCLONE names the rclone to run: one that cannot be run was reported as
    `cannot write output` (an OSError taken for standard output's) and 74."""
    rclone = str(tmp_path) if rclone == "DIRECTORY" else rclone
    done = _script(script, *[a.replace("REMOTE", "offsite:b") for a in args],
                   env={"RCLONE": rclone, "TMPDIR": str(tmp_path)})
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert_one_line_error(done.stderr, script)
    assert b"cannot write output" not in done.stderr and f"RCLONE={rclone}".encode() in done.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("where, why", [("FILE", "File exists"), ("FILE/sub", "Not a directory")],
                         ids=["a file", "under a file"])
def test_backup_into_a_dir_that_cannot_be_made_is_74(tmp_path, where, why):
    """--dir naming a regular file (or a path under one): the backup's output cannot be
    written, 74 as for a directory that cannot be examined, not an undocumented 1."""
    plain = tmp_path / "FILE"
    plain.write_bytes(b"kept\n")
    target = str(tmp_path / where)
    done = _script("encpipe-backup", "--dir", target, "shop")
    assert (done.returncode, done.stdout) == (74, b""), done.stderr
    assert done.stderr.decode().splitlines() == [f"encpipe-backup: error: backup of shop failed (status 74): "
                                                 f"cannot use {target}: {why}; nothing was stored"]
    assert plain.read_bytes() == b"kept\n" and os.listdir(tmp_path) == ["FILE"]


def test_a_dir_the_user_may_not_make_is_said_with_the_command_that_makes_it_theirs():
    """`cannot use DIR: Permission denied` (74) came with no hint; a newcomer running
    the backup as postgres under a directory of root's did not know what to do. The
    hint names the user and the directory, each quoted for the shell; another
    reason (a file in the way) has none."""
    import pwd

    from encpipe.pgbackup import _dir_hint

    user = pwd.getpwuid(os.geteuid()).pw_name
    assert _dir_hint(PermissionError(13, "Permission denied"), "/srv/my backups") == (
        f"make it this user's, as root: install -d -o {user} -m 700 '/srv/my backups'")
    assert _dir_hint(FileExistsError(17, "File exists"), "/srv/b") is None


@pytest.mark.parametrize("args, status, message", [
    (["--legacy-key-file", "MISSING"], 66, "--legacy-key-file: cannot read MISSING: No such file or directory"),
    (["--legacy-key-file", "/dev/zero"], 64, "--legacy-key-file: /dev/zero: more than 65536 bytes"),
    (["--legacy-key-file", "nosuchkey"], 64, "--legacy-key-file: no such file, and the value (not shown)"),
    (["--legacy-passphrase-file", "MISSING"], 66, "--legacy-passphrase-file: cannot read MISSING: No such file"),
    (["--legacy-passphrase-file", "DIR"], 66, "--legacy-passphrase-file: cannot read DIR: Is a directory"),
    (["--key-file", "/dev/zero"], 64, "--key-file: /dev/zero: more than 65536 bytes"),
    (["--identity", "MISSING"], 66, "--identity: cannot read MISSING: No such file or directory"),
    (["--passphrase-file", "MISSING"], 66, "--passphrase-file: cannot read MISSING: No such file or directory"),
    (["--sign-key", "MISSING"], 66, "--sign-key: cannot read MISSING: No such file or directory"),
], ids=["legacy-key-file missing", "legacy-key-file /dev/zero", "legacy-key-file a bare word",
        "legacy-passphrase-file missing", "legacy-passphrase-file a directory", "key-file /dev/zero",
        "identity missing", "passphrase-file missing", "sign-key missing"])
@pytest.mark.parametrize("legacy_file", [True, False], ids=["a legacy file", "no legacy file"])
def test_migrate_refuses_a_key_source_it_cannot_use_before_any_file(tmp_path, args, status, message, legacy_file):
    """The key sources are checked (keyrings read by `encpipe keyid`) before any file:
    a missing --legacy-key-file was a failed line per file, each encpipe's own error
    naming --key-file; --key-file /dev/zero passed when no file needed converting; a
    bad --sign-key was two error lines, encpipe's and migrate's. A device (/dev/zero)
    is read once by the script itself, as a FIFO is, up to 64 KiB (fdsecrets)."""
    from test_backup_restore import make_legacy_file

    folder = tmp_path / "backups"
    folder.mkdir(mode=0o700)
    if legacy_file:
        make_legacy_file(folder / "shop_20250101T000000Z.sql.enc", "ab" * 32, b"SELECT 1;\n")
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    names = {"MISSING": str(tmp_path / "missing"), "DIR": str(tmp_path)}
    done = _script("encpipe-migrate", *[names.get(a, a) for a in args], str(folder),
                   env={"BACKUP_ENCRYPTION_KEY": "ab" * 32})
    assert (done.returncode, done.stdout) == (status, b""), done.stderr
    assert_one_line_error(done.stderr, "encpipe-migrate")
    for word, value in names.items():
        message = message.replace(word, value)
    assert done.stderr.decode().startswith(f"encpipe-migrate: error: {message}"), done.stderr
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before


@pytest.mark.parametrize("args", [["--sign-key", "KEY"], ["--key-file", "KEY"]], ids=["sign-key", "key-file"])
def test_migrate_with_an_encpipe_that_cannot_run_is_66_before_any_file(tmp_path, args):
    """The first encpipe migrate runs checks the key files: an ENCPIPE that cannot be run
    is one line and 66 there (with --sign-key it was a FileNotFoundError traceback)."""
    key = tmp_path / "new.key"
    key.write_text("4f" * 32 + "\n")
    key.chmod(0o600)  # else a warning (README, "Where keys come from") before the error
    folder = tmp_path / "backups"
    folder.mkdir(mode=0o700)
    done = _script("encpipe-migrate", *[str(key) if a == "KEY" else a for a in args], str(folder),
                   env={"BACKUP_ENCRYPTION_KEY": "ab" * 32, "ENCPIPE": "/nonexistent/encpipe"})
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert_one_line_error(done.stderr, "encpipe-migrate")
    assert b"cannot run encpipe: /nonexistent/encpipe" in done.stderr


@pytest.mark.parametrize("args, status, message", [
    (["--key-file", "MISSING"], 66, "--key-file: cannot read MISSING: No such file or directory"),
    (["--key-file", "/dev/zero"], 64, "--key-file: /dev/zero: more than 65536 bytes"),
    (["--key-file", "nosuchkey"], 64, "--key-file: no such file, and the value (not shown)"),
    (["--identity", "BAD"], 64, "--identity: BAD, line 1: a key must be 64 hex characters, not 2"),
    (["--passphrase-file", "MISSING"], 66, "--passphrase-file: cannot read MISSING: No such file or directory"),
    (["--passphrase-file", "DIR"], 66, "--passphrase-file: cannot read DIR: Is a directory"),
], ids=["key-file missing", "key-file /dev/zero", "key-file a bare word", "identity malformed",
        "passphrase-file missing", "passphrase-file a directory"])
def test_restore_refuses_a_key_source_it_cannot_use_before_reaching_the_server(tmp_path, backup_file, args, status,
                                                                               message):
    """The key sources each encpipe of the restore gets are checked first (keyrings by
    `encpipe keyid`, passphrase files opened): a missing key file was psql's connection
    error, or a failed restore once the server was reached (PGHOST names no server here)."""
    bad = tmp_path / "bad.key"
    bad.write_text("zz\n")
    bad.chmod(0o600)  # else a warning (README, "Where keys come from") before the error
    names = {"MISSING": str(tmp_path / "missing"), "DIR": str(tmp_path), "BAD": str(bad)}
    done = _script("encpipe-restore", *[names.get(a, a) for a in args], backup_file, "shop")
    assert (done.returncode, done.stdout) == (status, b""), done.stderr
    assert_one_line_error(done.stderr, "encpipe-restore")
    for word, value in names.items():
        message = message.replace(word, value)
    assert done.stderr.decode().startswith(f"encpipe-restore: error: {message}"), done.stderr


NOT_ASCII_DIGITS = ["\u0661\u0662", " 2", "2 ", "2\n", "1_0", "+2"]


@pytest.mark.parametrize("value", NOT_ASCII_DIGITS, ids=repr)
@pytest.mark.parametrize("args", [["seal", "--threads"], ["open", "--threads"], ["inspect", "--verify", "--threads"],
                                  ["seal", "--work-factor"]], ids=" ".join)
def test_encpipe_takes_a_number_in_ascii_digits_only(args, value):
    """int() reads Arabic-Indic digits, spaces around, '_' and '+': --threads '١٢' was 12."""
    done = subprocess.run(command(*args, value), input=b"", capture_output=True,
                          env=clean_env({"PYTHONPATH": str(REPO), "ENCPIPE_KEY": KEY}), timeout=WAIT)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert_one_line_error(done.stderr)
    assert f"{args[-1]} must be a whole number, not {value!r}".encode() in done.stderr


@pytest.mark.parametrize("value", ["\u0661\u0666K", " 64K", "64K ", "64K\n", "\t1M"], ids=repr)
def test_encpipe_chunk_size_takes_ascii_digits_and_its_suffixes_only(value):
    done = subprocess.run(command("seal", "--chunk-size", value), input=b"", capture_output=True,
                          env=clean_env({"PYTHONPATH": str(REPO), "ENCPIPE_KEY": KEY}), timeout=WAIT)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert_one_line_error(done.stderr)
    assert f"--chunk-size: cannot read {value!r}".encode() in done.stderr


@pytest.mark.parametrize("script, option, value", [
    *((script, "--threads", value) for script in ("encpipe-backup", "encpipe-restore", "encpipe-verify")
      for value in NOT_ASCII_DIGITS[:4]),
    *((script, "--chunk-size", value) for script in ("encpipe-backup", "encpipe-migrate") for value in ("64K\n", " 64K")),
], ids=lambda v: repr(v) if " " in v or "\n" in v or not v.isascii() else v)
def test_scripts_take_threads_and_chunk_size_in_ascii_digits_only(tmp_path, backup_file, script, option, value):
    """Refused (64, one line) before anything runs: encpipe-backup refused them only once
    DIR was made and locked (two lines), encpipe-restore only once the server was reached."""
    where = str(tmp_path / "b")
    args = {"encpipe-backup": ["--dir", where, "shop"], "encpipe-restore": [backup_file, "shop"],
            "encpipe-verify": [backup_file], "encpipe-migrate": [os.path.dirname(backup_file)]}[script]
    done = _script(script, option, value, *args, env={"BACKUP_ENCRYPTION_KEY": "ab" * 32})
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert_one_line_error(done.stderr, script)
    assert repr(value).encode() in done.stderr and option.encode() in done.stderr
    assert not os.path.exists(where)


@pytest.mark.parametrize("script", ["encpipe-backup", "encpipe-restore"])
@pytest.mark.parametrize("python", ["WITHOUT ENCPIPE", "true"], ids=["a Python without encpipe", "not a Python"])
def test_an_encpipe_python_that_cannot_import_encpipe_is_66(tmp_path, script, python):
    """A Python that runs but has no encpipe was its own `No module named encpipe` and
    status 1; a command that is not Python (true) ran and said nothing (0)."""
    if python == "WITHOUT ENCPIPE":  # no site packages, no PYTHONPATH: not even a venv's editable install
        python = str(tmp_path / "python3")
        Path(python).write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -I -S \"$@\"\n")
        Path(python).chmod(0o755)
    done = _script(script, "--help", env={"ENCPIPE_PYTHON": python})
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert_one_line_error(done.stderr, script)
    assert f"ENCPIPE_PYTHON='{python}' is not a Python that can import encpipe".encode() in done.stderr


@pytest.mark.skipif(not shutil.which("rclone"), reason="needs rclone")
@pytest.mark.parametrize("kind", ["sealed", "legacy"])
def test_verify_of_a_file_whose_header_cannot_be_read_is_66_unreadable(tmp_path, kind):
    """The listing read the file; verify's own read of its header fails (rclone cat, the
    second time): that file is unreadable, 66, as the listing says of such a file, not
    encpipe's `cannot read input` and 74 (README: verify's 66 unreadable, 74 an I/O
    error while its chunks are read)."""
    from s3server import rclone_binary
    from test_backup_restore import make_legacy_file

    directory = tmp_path / "d"
    directory.mkdir()
    name = "shop_20260101T000000Z.sql.enc"
    if kind == "sealed":
        sealed = subprocess.run(command("seal"), input=b"SELECT 1;\n", capture_output=True, check=True,
                                env=clean_env({"PYTHONPATH": str(REPO), "ENCPIPE_KEY": KEY})).stdout
        (directory / name).write_bytes(sealed)
    else:
        make_legacy_file(directory / name, KEY, b"SELECT 1;\n")
    failing = tmp_path / "rclone"  # the real rclone, whose second `cat` of a whole object fails
    failing.write_text(f'#!/bin/sh\nif [ "$1" = cat ] && [ "$2" != --tail ]; then\n'
                       f'  [ -e "{tmp_path}/seen" ] && exit 1\n  : > "{tmp_path}/seen"\nfi\n'
                       f'exec {shlex.quote(rclone_binary())} "$@"\n')
    failing.chmod(0o755)
    (tmp_path / "rclone.conf").write_text("")
    done = _script("encpipe-verify", "here:", env={
        "RCLONE": str(failing), "RCLONE_CONFIG": str(tmp_path / "rclone.conf"), "BACKUP_ENCRYPTION_KEY": KEY,
        "RCLONE_CONFIG_HERE_TYPE": "alias", "RCLONE_CONFIG_HERE_REMOTE": str(directory)})
    assert done.returncode == 66, done.stderr
    assert done.stderr.decode() == f"encpipe-verify: error: here:{name}: cannot read {name}: rclone cannot read here:{name}\n"
    [result] = json.loads(done.stdout)["results"]
    assert (result["ok"], result["exit_code"], result["error_class"], result["error"]) == (
        False, 66, "input_unavailable", f"cannot read {name}: rclone cannot read here:{name}")


@pytest.mark.parametrize("script, args", [
    ("encpipe-prune", ["--max-age", "VALUE", "DIR"]), ("encpipe-backup", ["--max-age", "VALUE", "--dir", "DIR", "shop"]),
    ("encpipe-check", ["--max-age", "VALUE", "DIR"]), ("encpipe-check", ["--max-age", "1", "--warn-age", "VALUE", "DIR"]),
], ids=["prune", "backup", "check --max-age", "check --warn-age"])
@pytest.mark.parametrize("value", ["1000001", "-1", "nan", "\u0661\u0662", "1_0", " 1", "1e1"])
def test_an_age_out_of_range_is_refused_with_its_range(tmp_path, script, args, value):
    """The message said "from 0" and hid the upper bound (1000000) a value over it is refused for."""
    option = args[args.index("VALUE") - 1]
    done = _script(script, *[{"VALUE": value, "DIR": str(tmp_path)}.get(a, a) for a in args])
    unknown = f"UNKNOWN: {done.stderr.decode().splitlines()[0].partition(': error: ')[2]}\n".encode()
    assert (done.returncode, done.stdout) == ((3, unknown) if script == "encpipe-check" else (64, b"")), done.stderr
    assert_one_line_error(done.stderr, script)
    assert f"{option} must be a number from 0 to 1000000, not {value!r}".encode() in done.stderr


def test_restore_reads_a_fifo_key_file_once_for_its_check_and_its_children(tmp_path, backup_file):
    """A keyring on a FIFO is read once, at the start, by the restore itself (fdsecrets),
    and its check before the server is reached (keyid) gets a copy, as each later
    encpipe would: it neither takes the FIFO's content from them nor waits for a second
    writer. Before, the check left a FIFO alone, and each encpipe opened it again."""
    from test_fifo_keys import OneShotWriter

    fifo = OneShotWriter(tmp_path / "key.fifo", (KEY + "\n").encode())
    try:
        done = _script("encpipe-restore", "--no-globals", "--key-file", str(fifo.path), backup_file, "shop")
    finally:
        fifo.stop.set()
    assert (done.returncode, done.stdout, fifo.served) == (1, b"", 1), done.stderr
    assert_one_line_error(done.stderr, "encpipe-restore")
    assert b"psql: error: connection to server" in done.stderr  # PGHOST names no server: the next step


def test_the_checks_before_a_restore_get_no_secret(tmp_path, backup_file):
    """The Python ENCPIPE_PYTHON names, asked whether it can import encpipe, and the
    `encpipe keyid` that reads the key files get no secret variable (encpipe's, libpq's,
    rclone's) and no descriptor but 0 to 2 (a key on 3 stays with the restore)."""
    log = tmp_path / "log"
    # the word a line starts with: the probe's -c (its one line of code, no argument), the restore's
    # own Python (-c RUN_MODULE encpipe.launch...) as `launch`, else encpipe's command (keyid...)
    spy = ("#!/bin/sh\ncase \"$1 ${3-}\" in '-c ') word=-c ;; '-c '*) word=launch ;; *) word=\"$1\" ;; esac\n"
           "{ printf '%s ' \"$word\"; env | grep -E '^(ENCPIPE_KEY|PGPASSWORD|RCLONE_)' | cut -d= -f1 | "
           "tr '\\n' ' '; ls /proc/$$/fd | tr '\\n' ' '; echo; } >> " + shlex.quote(str(log)) + "\nexec {python} \"$@\"\n")
    python, encpipe = tmp_path / "python3", tmp_path / "encpipe"
    python.write_text(spy.replace("{python}", shlex.quote(sys.executable)))
    encpipe.write_text(spy.replace("{python}", f"{shlex.quote(sys.executable)} -m encpipe"))
    for path in (python, encpipe):
        path.chmod(0o755)
    key = tmp_path / "key"
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    with open(key) as held:
        os.set_inheritable(held.fileno(), True)
        given = str(held.fileno())
        done = subprocess.run([str(SCRIPTS / "encpipe-restore"), "--no-globals", "--key-file", str(key), backup_file,
                               "shop"],
                              capture_output=True, timeout=WAIT, close_fds=False, env=clean_env({
                                  "PYTHONPATH": str(REPO), "ENCPIPE_KEY": KEY, "PGHOST": "/nonexistent",
                                  "PGPASSWORD": "pw", "RCLONE_CONFIG_X_TYPE": "local", "ENCPIPE_PYTHON": str(python),
                                  "ENCPIPE": str(encpipe)}))
    assert done.returncode == 1 and b"psql: error" in done.stderr, done.stderr  # PGHOST names no server
    checks = [line.split() for line in log.read_text().splitlines() if line.split()[0] in ("-c", "keyid")]
    assert [words[0] for words in checks] == ["-c", "keyid"], log.read_text()
    for words in checks:  # names of secret variables, then descriptors (the spy's shell keeps some of its own)
        assert not {"ENCPIPE_KEY", "PGPASSWORD", "RCLONE_CONFIG_X_TYPE", given} & set(words), words
    [restore] = [line.split() for line in log.read_text().splitlines() if line.startswith("launch ")]
    assert {"ENCPIPE_KEY", given} <= set(restore), restore  # the restore itself still has both


@pytest.mark.parametrize("value", [" 1", "1 ", "1\n", "\u0661", "+1"])
def test_a_keep_count_is_ascii_digits_only(tmp_path, value):
    """--keep-last took surrounding spaces and a newline (text.strip()); the others refused."""
    done = _script("encpipe-prune", "--keep-last", value, str(tmp_path))
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert_one_line_error(done.stderr, "encpipe-prune")
    assert f"--keep-last must be a whole number from 0, not {value!r}".encode() in done.stderr


# --- a location that is not there at all: the command fails, nothing on stdout ------------


def _missing(tmp_path, where):
    return {"missing": str(tmp_path / "gone"), "under a missing directory": str(tmp_path / "gone" / "x"),
            "under a file": str(tmp_path / "file" / "x")}[where]


MISSING = ["missing", "under a missing directory", "under a file"]


@pytest.mark.parametrize("where", MISSING)
@pytest.mark.parametrize("how", ["--dir", "PATH", "ENCPIPE_BACKUP_DIR"])
def test_verify_of_a_path_that_is_not_there_prints_no_report(tmp_path, where, how):
    """Before: the JSON report of one `unreadable` result on stdout, and 66. A location
    that cannot be read at all is the command's failure (one line, 66), as for
    encpipe-prune and encpipe-list; a location where some files fail still prints
    its report (README)."""
    (tmp_path / "file").write_bytes(b"")
    path = _missing(tmp_path, where)
    why = "Not a directory" if where == "under a file" else "No such file or directory"
    args, env = {"--dir": (["--dir", path], {}), "PATH": ([path], {}),
                 "ENCPIPE_BACKUP_DIR": ([], {"ENCPIPE_BACKUP_DIR": path})}[how]
    done = _script("encpipe-verify", *args, env=env)
    assert (done.returncode, done.stdout) == (66, b""), done
    assert done.stderr.decode() == f"encpipe-verify: error: cannot read {path}: {why}\n"


def test_verify_of_a_missing_path_beside_a_good_one_reads_neither(tmp_path):
    good = tmp_path / "d"
    good.mkdir()
    subprocess.run([*command("seal"), "-o", str(good / "shop_20260101T000000Z.sql.enc")], input=b"SELECT 1;\n",
                   check=True, env=clean_env({"PYTHONPATH": str(REPO), "ENCPIPE_KEY": KEY}))
    done = _script("encpipe-verify", str(good), str(tmp_path / "gone"))
    assert (done.returncode, done.stdout) == (66, b""), done
    assert done.stderr.decode() == f"encpipe-verify: error: cannot read {tmp_path}/gone: No such file or directory\n"
    done = _script("encpipe-verify", str(good))  # the good one alone: its report, 0
    assert done.returncode == 0 and json.loads(done.stdout)["verified"] == 1, done


@pytest.mark.skipif(not shutil.which("rclone"), reason="needs rclone")
def test_verify_of_a_remote_object_that_is_not_there_prints_no_report(tmp_path):
    from s3server import rclone_binary

    (tmp_path / "d").mkdir()
    (tmp_path / "rclone.conf").write_text("")
    done = _script("encpipe-verify", "here:shop_20260101T000000Z.sql.enc", env={
        "RCLONE": rclone_binary(), "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
        "RCLONE_CONFIG_HERE_TYPE": "alias", "RCLONE_CONFIG_HERE_REMOTE": str(tmp_path / "d")})
    assert (done.returncode, done.stdout) == (66, b""), done
    assert done.stderr.decode() == "encpipe-verify: error: cannot read here:shop_20260101T000000Z.sql.enc: " \
                                   "no such object\n"


@pytest.mark.parametrize("where", MISSING)
@pytest.mark.parametrize("script, args", [("encpipe-prune", ["--keep-last", "1", "--dir"]),
                                          ("encpipe-prune", ["--keep-last", "1", "--allow-empty", "--dir"]),
                                          ("encpipe-list", ["--dir"]), ("encpipe-list", ["--stats"])],
                         ids=["prune", "prune --allow-empty", "list", "list --stats DIR"])
def test_prune_and_list_of_a_path_that_is_not_there_print_nothing(tmp_path, where, script, args):
    (tmp_path / "file").write_bytes(b"")
    path = _missing(tmp_path, where)
    why = "Not a directory" if where == "under a file" else "No such file or directory"
    done = _script(script, *args, path)
    assert (done.returncode, done.stdout) == (66, b""), done
    assert done.stderr.decode() == f"{script}: error: cannot read backup directory {path}: {why}\n"


@pytest.mark.parametrize("where", MISSING)
def test_check_of_a_path_that_is_not_there_is_one_critical_line(tmp_path, where):
    """encpipe-check is a Nagios plugin: its one line is its standard output, whatever
    the state (README, "Monitoring"): CRITICAL and 2, nothing on standard error; the
    path named once (before, `cannot list P: cannot read backup directory P: ...`)."""
    (tmp_path / "file").write_bytes(b"")
    path = _missing(tmp_path, where)
    why = "Not a directory" if where == "under a file" else "No such file or directory"
    done = _script("encpipe-check", "--max-age", "24", "--dir", path)
    assert (done.returncode, done.stderr) == (2, b""), done
    assert done.stdout.decode() == f"CRITICAL: cannot list {path}: {why}\n"
