"""Inputs that cost their maker nothing and would cost encpipe without bound: every
one must end in seconds, with one error line and a documented status, nothing on
standard output (a report of the scripts' own excepted), memory bounded.

The attacker can write the backup directory (or holds one key slot); the real
commands and scripts run as processes, each under a timeout, where a hang, a
read without end or a file that grows the memory is the failure.
"""

import io
import json
import os
import resource
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "a" * 64
TIB = 1 << 40
LEGACY_NAME = "shop_backup_2024-01-01_00-00-00-000Z.sql.enc"
SCRIPT = os.path.join(ROOT, "scripts", "encpipe-")


def limited(fsize=256 << 20):
    """A child that cannot write more than `fsize` bytes to any one file (a spool of a
    terabyte fails with EFBIG, as a full disk would, rather than filling this one)."""

    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return apply


def run(argv, env=None, timeout=10, **options):
    """argv as a process: (status, stdout, stderr text), or pytest's failure when it
    has not ended within `timeout` seconds (it is killed)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ENCPIPE_", "BACKUP_"))}
    full.update(PYTHONPATH=ROOT, **(env or {}))
    if "input" not in options:
        options.setdefault("stdin", subprocess.DEVNULL)
    try:
        done = subprocess.run(argv, capture_output=True, env=full, timeout=timeout, preexec_fn=limited(), **options)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv[1:3]} still running after {timeout} s")
    assert "Traceback" not in done.stderr.decode(), done.stderr
    return done.returncode, done.stdout, done.stderr.decode()


def encpipe(*argv, **options):
    return run([sys.executable, "-m", "encpipe", *argv], **options)


def script(name, *argv, **options):
    return run([sys.executable, SCRIPT + name, *argv], **options)


def one_error(stderr, prog="encpipe"):
    lines = stderr.splitlines()
    assert lines and lines[0].startswith(f"{prog}: error: "), stderr
    assert all(line.startswith(f"{prog}: ") for line in lines), stderr
    return lines[0]


# --- a file of the previous tool that is a terabyte of holes ----------------------


# Holes under AES-GCM's 64 GiB (a terabyte is refused by its size, before any read:
# tests/test_legacy_gcm_limit.py), so that what stops a reader here is the first hole.
LEGACY_HOLES = 1 << 35


def sparse_legacy(directory, size=LEGACY_HOLES, name=LEGACY_NAME):
    """A `.sql.enc` of the previous tool's name: 64 random bytes (salt, IV, tag), then
    holes to `size`. It costs no disk; its single tag covers all of it, so a reader
    that reads it to the end before it can say anything reads 32 GiB of zeros."""
    directory.mkdir(exist_ok=True)
    path = directory / name
    with open(path, "wb") as f:
        f.write(os.urandom(64))
        f.truncate(size)
    return path


LEGACY_ENV = {"BACKUP_ENCRYPTION_KEY": KEY}


def test_open_legacy_of_a_terabyte_of_holes_ends_at_the_first(tmp_path):
    """Before: it authenticated the whole file, spooling it to TMPDIR first: a
    terabyte read and (without the limit here) written to the disk."""
    path = sparse_legacy(tmp_path / "d")
    (tmp_path / "t").mkdir()
    code, out, err = encpipe("open", "--legacy", str(path), env={**LEGACY_ENV, "TMPDIR": str(tmp_path / "t")})
    assert (code, out) == (65, b"")
    assert "zero bytes" in one_error(err)
    assert os.listdir(tmp_path / "t") == []


def test_inspect_legacy_verify_of_a_terabyte_of_holes_ends_at_the_first(tmp_path):
    path = sparse_legacy(tmp_path / "d")
    code, out, err = encpipe("inspect", "--legacy", "--verify", str(path), env=LEGACY_ENV)
    assert (code, out) == (65, b"")
    assert "zero bytes" in one_error(err)


def test_inspect_legacy_without_a_key_reads_no_payload(tmp_path):
    path = sparse_legacy(tmp_path / "d")
    code, out, err = encpipe("inspect", "--legacy", "--json", str(path))
    assert code == 0, err
    assert json.loads(out)["payload_bytes"] == LEGACY_HOLES - 64


def test_verify_of_a_directory_with_a_terabyte_of_holes_ends(tmp_path):
    """Before: encpipe-verify (and so every nightly verify) read the terabyte."""
    sparse_legacy(tmp_path / "d")
    code, out, err = script("verify", str(tmp_path / "d"), env=LEGACY_ENV)
    assert code == 65, err
    (result,) = json.loads(out)["results"]
    assert result["ok"] is False and "zero bytes" in result["error"]


def test_verify_and_prune_of_a_remote_object_of_holes_end_at_the_first(tmp_path):
    """The same object in a bucket (S3, through rclone), read as a stream, not a file (smaller:
    `rclone serve s3` reads all of a file to list it). Before: 77, once all of it was read."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from s3server import S3Server

    server = S3Server(str(tmp_path / "s3"))
    try:
        name = "shop_20240101T000000Z.sql.enc"
        sparse_legacy(tmp_path / "s3" / "s3root" / "backups" / "d", size=256 << 20, name=name)
        env = {**server.env, "ENCPIPE_KEY": KEY}
        code, out, err = script("verify", f"{server.location}/d", env=env)
        assert code == 65, err
        (result,) = json.loads(out)["results"]
        assert result["ok"] is False and "zero bytes" in result["error"]
        code, out, err = script("prune", "--keep-last", "1", f"{server.location}/d", env=env)
        assert code == 65, err
        assert "zero bytes" in " ".join(json.loads(out)["left"][0]["reasons"])
    finally:
        server.stop()


def test_prune_with_a_terabyte_of_holes_under_a_backup_name_ends_and_leaves_it(tmp_path):
    """A file without the magic under an encpipe backup's name is authenticated as
    the previous tool's (a raw key is its AES key): before, prune read the terabyte."""
    name = "shop_20240101T000000Z.sql.enc"
    path = sparse_legacy(tmp_path / "d", name=name)
    code, out, err = script("prune", "--keep-last", "1", str(tmp_path / "d"), env={"ENCPIPE_KEY": KEY})
    assert code == 65, err
    report = json.loads(out)
    assert report["removed"] == [] and [f["filename"] for f in report["left"]] == [name]
    assert "zero bytes" in " ".join(report["left"][0]["reasons"])
    assert path.stat().st_size == LEGACY_HOLES


def test_migrate_of_a_terabyte_of_holes_ends_and_keeps_it(tmp_path):
    path = sparse_legacy(tmp_path / "d")
    (tmp_path / "t").mkdir()
    key = tmp_path / "new.key"
    key.write_text("5e" * 32 + "\n")
    key.chmod(0o600)
    code, out, err = script("migrate", "--key-file", str(key), str(tmp_path / "d"),
                            env={**LEGACY_ENV, "TMPDIR": str(tmp_path / "t")})
    assert (code, err) == (65, "")  # the child's reason is in the file's line, not a line of its own
    [line] = [json.loads(text) for text in out.splitlines()]
    assert line["status"] == "failed" and "32 zero bytes in a row" in line["reason"], line
    assert sorted(os.listdir(tmp_path / "d")) == [LEGACY_NAME] and path.stat().st_size == LEGACY_HOLES
    assert os.listdir(tmp_path / "t") == []


class Growing(io.BufferedReader):
    """A legacy file that its writer extends by a block for every block read (and
    could punch holes behind the reader, so that its disk use stays the same): a read
    to its end would never end. Fails the test after `most` reads."""

    def __init__(self, path, most=64):
        super().__init__(io.FileIO(path, "rb"))
        self.path, self.reads, self.most = path, 0, most

    def readinto(self, buffer):
        self.reads += 1
        assert self.reads <= self.most, "the read does not end"
        with open(self.path, "ab") as f:
            f.write(os.urandom(len(buffer)))
        return super().readinto(buffer)


@pytest.mark.parametrize("output", [False, True])
def test_a_legacy_file_that_grows_as_it_is_read_is_read_to_its_size_when_opened(tmp_path, output):
    """Before: read to the end, which a writer (any user who can write the directory
    plants files encpipe-migrate converts) could keep moving, while the spool filled
    TMPDIR. Now a regular file is read no further than its size when the read began:
    the bytes there are what the tag authenticates."""
    from encpipe import legacy

    data = os.urandom(3 << 20)
    path = tmp_path / LEGACY_NAME
    with open(path, "wb") as f:
        legacy.seal_legacy(io.BytesIO(data), f, bytes.fromhex(KEY))
    out = io.BytesIO() if output else None
    with Growing(path) as src:
        info = legacy.open_legacy(src, out, [legacy.key_from_setting(KEY)], tmpdir=str(tmp_path))
    assert info.plaintext_bytes == len(data)
    if output:
        assert out.getvalue() == data


# --- a globals file of hundreds of megabytes ----------------------------------------

GLOBALS_MAX_BYTES = 64 << 20


def test_restore_reads_no_more_of_a_globals_file_than_its_limit(tmp_path):
    """A holder of the backup key (or a user who can seal to it and sign) can make a
    globals file that authenticates. Before: restore read all of its plaintext into
    memory, and decoded and split it there: three times its size (160 MiB: 500 MiB).
    Now one over GLOBALS_MAX_BYTES (64 MiB) is refused, 65, before the server is reached."""
    from cliutil import measure_peak_rss

    d = tmp_path / "b"
    d.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCPIPE_", "PG"))}
    env.update(PYTHONPATH=ROOT, ENCPIPE_KEY=KEY, PGHOST=str(tmp_path / "no-server"))
    seal = [sys.executable, "-m", "encpipe", "seal", "--output"]
    subprocess.run([*seal, str(d / "shop_20240101T000000Z.sql.enc")], input=b"SELECT 1;\n", env=env, check=True)
    line = b"-- " + b"x" * 1020 + b"\n"
    feeder = subprocess.Popen([sys.executable, "-c", "import sys\nfor _ in range(160 * 1024): "
                               f"sys.stdout.buffer.write({line!r})"], stdout=subprocess.PIPE)
    subprocess.run([*seal, str(d / "shop_20240101T000000Z.globals.sql.enc")], stdin=feeder.stdout, env=env,
                   check=True)
    feeder.stdout.close()
    assert feeder.wait() == 0 and 160 << 20 > 2 * GLOBALS_MAX_BYTES
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        code, rss = measure_peak_rss([os.path.join(ROOT, "scripts", "encpipe-restore"),
                                      str(d / "shop_20240101T000000Z.sql.enc"), "shopcopy"],
                                     tmp_path / "rss", stdout=stdout, stderr=stderr, env=env, timeout=30,
                                     stdin=subprocess.DEVNULL)
    assert (code, out.read_bytes()) == (65, b""), err.read_text()
    assert "over" in one_error(err.read_text(), "encpipe-restore")
    assert rss < (GLOBALS_MAX_BYTES >> 10) + 64 * 1024  # before: 500 MiB


# --- a version 1 file that is a terabyte of holes, rewrapped -----------------------


def sparse_v1(directory, size=TIB):
    """A v1 file under a backup's name: a genuine header (its holder can make one, or
    a reader of any v1 backup copy one), then holes to `size`. v1 has no trailer."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from cliutil import seal_v1

    directory.mkdir(exist_ok=True)
    path = directory / "shop_20240101T000000Z.sql.enc"
    with open(path, "wb") as f:
        f.write(seal_v1(b"", key=KEY))
        f.truncate(size)
    return path


def key_files(tmp_path):
    paths = []
    for name, key in (("old.key", KEY), ("new.key", "5e" * 32)):
        path = tmp_path / name
        path.write_text(key + "\n")
        path.chmod(0o600)
        paths.append(str(path))
    return paths


def test_rewrap_in_place_of_a_v1_terabyte_of_holes_writes_no_copy_of_it(tmp_path):
    """Before: a v1 payload was copied unchecked, so --in-place wrote a terabyte of
    zeros beside the file (here the file-size limit stops it: 74) and filled the disk."""
    path = sparse_v1(tmp_path / "d")
    old, new = key_files(tmp_path)
    code, out, err = encpipe("rewrap", "--in-place", str(path), "--key-file", old, "--add-key-file", new)
    assert (code, out) == (65, b"")
    assert "chunk 0" in one_error(err)
    assert os.listdir(tmp_path / "d") == [path.name] and path.stat().st_size == TIB


def test_rewrap_to_standard_output_of_a_damaged_v1_file_writes_nothing(tmp_path):
    """A v1 file is checked whole before its first byte goes out, as a v2 file is."""
    path = sparse_v1(tmp_path / "d", size=(1 << 20))
    old, new = key_files(tmp_path)
    with open(path, "rb") as src:
        code, out, err = encpipe("rewrap", "--key-file", old, "--add-key-file", new, stdin=src)
    assert (code, out) == (65, b"")
    assert "chunk 0" in one_error(err)


def test_rotate_of_a_v1_terabyte_of_holes_ends_and_keeps_it(tmp_path):
    path = sparse_v1(tmp_path / "d")
    old, new = key_files(tmp_path)
    code, out, err = script("rotate", "--old-key-file", old, "--new-key-file", new, str(tmp_path / "d"))
    assert code == 1, err
    (line,) = [json.loads(line) for line in out.splitlines()]
    assert (line["status"], line["exit"]) == ("error", 65) and "chunk 0" in line["error"]
    assert os.listdir(tmp_path / "d") == [path.name] and path.stat().st_size == TIB


def test_rewrap_of_a_genuine_v1_file_still_works_and_checks_it(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from cliutil import seal_v1

    data = os.urandom(100_000)
    path = tmp_path / "v1.enc"
    path.write_bytes(seal_v1(data, key=KEY))
    old, new = key_files(tmp_path)
    code, out, err = encpipe("rewrap", "--key-file", old, "--add-key-file", new, input=path.read_bytes())
    assert code == 0, err
    code, plain, err = encpipe("open", "--key-file", new, input=out)
    assert (code, plain) == (0, data), err


# --- a globals file's properties line nested without end; its SQL split into statements ---


def test_a_properties_line_nested_deeper_than_json_reads_is_no_properties():
    """A globals file's properties line (its last) of `[` repeated: json.loads raised
    RecursionError, not ValueError, and encpipe-restore ended in `internal error:
    RecursionError` (70, a bug by its own words) before any server was reached, as
    encpipe-verify, -prune and -check --verify did for such a file in a backup
    directory. Now it is a line that cannot be read as properties: none, as a
    properties line that is not JSON is."""
    from encpipe import pgglobals, pgprops

    line = pgprops.LINE_PREFIX + "[" * 30000
    assert pgprops.parse_line(line) is None
    text = b"--\n-- PostgreSQL database cluster dump\n--\n\nCREATE ROLE app;\n" + line.encode() + b"\n"
    assert pgglobals.statements(text.decode()) == (["CREATE ROLE app;"], None)


def test_a_globals_file_of_more_statements_than_a_restore_plans_from_is_refused(monkeypatch):
    """The restore plans from a globals file's SQL, read up to 64 MiB, each statement kept as
    a string (some 60 bytes beyond its text): 64 MiB of one-byte statements took 2.7 GB and a
    minute before any server was reached, its lines all split first. Now its lines are read
    one at a time, and more than GLOBALS_MAX_STATEMENTS statements is 65 at once (lowered
    here to 1,000: the memory of the lines past it is never taken)."""
    import tracemalloc

    from encpipe import pgglobals
    from encpipe.pgcli import Failure

    monkeypatch.setattr(pgglobals, "GLOBALS_MAX_STATEMENTS", 1000)
    text = b";\n" * (64 << 10)
    tracemalloc.start()
    try:
        with pytest.raises(Failure) as refused:
            pgglobals.checked(text, "g", None, lambda *_: None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.status == 65 and str(refused.value) == (
        "the globals file g holds more than 1000 statements, more than a restore plans from; nothing was changed")
    assert peak < 2 * len(text), f"{peak / len(text):.1f} times the SQL's size"
