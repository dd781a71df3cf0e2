"""A value the scripts hand on to a child (a key file's path, a signing key's, a
database's name) is that option's value, whatever it starts with: a file named
-h, --help or -- is a file, never the child's --help (which printed its usage
and exited 0: rotate took the words of it for key ids) nor docopt's end of
options. Each goes to the child as one word, --option=VALUE
(encpipe/argwords.py); a secret on /dev/fd/N so given is still lent to the
children that name it, and to no other."""

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

import encpipe
from cliutil import ok, run as encpipe_run
from encpipe.fdsecrets import FdSecrets
from spies import records, write
from test_backup_restore import BACKUP, RESTORE, databases, dump, ensure_small, python_env, read_key, run, \
    script_env
from test_migrate import HEX_KEY, MIGRATE, NEW_KEY, make_backups, open_new, sha
from test_rotate import SCRIPT as ROTATE, World, lines, rotate_env

NAMES = ["-h", "--help", "--"]  # encpipe's help, twice; docopt's end of options
MISSING = (b"encpipe-%s: error: %s: no such file, and the value (not shown) may be a key or passphrase instead of a "
           b"path\nencpipe-%s: hint: %s takes the path of a file that holds the secret\n")


def _copy(source, target):
    shutil.copyfile(source, target)
    os.chmod(target, 0o600)


def _secret(path, text):
    path.write_text(text)
    os.chmod(path, 0o600)


def _keygen(path, *options):
    return ok(encpipe_run(["keygen", *options, "-o", str(path)])).decode().strip()


def _signing_key(path):
    """A signing key at `path`; its key id."""
    _keygen(path, "--sign")
    return ok(encpipe_run(["keyid", f"--sign-key={path}"])).decode().strip()


# --- encpipe-rotate -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("option", ["--old-key-file", "--new-key-file", "--sign-key"])
def test_rotate_takes_a_key_file_named_like_an_option_for_a_file(tmp_path, option, name):
    world = World(tmp_path)
    world.add("a.enc", "--key-file", world.old_a)
    files = {"--old-key-file": world.old_a, "--new-key-file": world.new}
    sign_id = None
    if option == "--sign-key":
        sign_id = _signing_key(tmp_path / "sign.key")
        _copy(tmp_path / "sign.key", tmp_path / name)
    else:
        _copy(files[option], tmp_path / name)
        files[option] = name  # relative: the run's directory is tmp_path
    argv = [f"{o}={f}" for o, f in files.items()] + ([f"--sign-key={name}"] if sign_id else [])
    for dry in (["--dry-run"], []):
        done = subprocess.run([sys.executable, ROTATE, *argv, *dry, str(world.dir)], capture_output=True,
                              env=rotate_env(), cwd=tmp_path, timeout=120)
        assert (done.returncode, done.stderr) == (0, b""), done.stderr
        got = lines(done)["a.enc"]
        if dry:
            assert (got["status"], got["remove"], got["add"]) == ("would-rotate", world.ids(world.old_a),
                                                                   world.ids(world.new)), got
            assert got["sign"] == ([sign_id] if sign_id else []), got
    assert got["status"] == "rotated", got
    assert got["signed_by"] == ([sign_id] if sign_id else []), got
    sealed = (world.dir / "a.enc").read_bytes()
    assert ok(encpipe_run(["open", "--key-file", world.new], sealed)) == world.plain["a.enc"]


def test_rotate_refuses_a_missing_key_file_named_like_an_option(tmp_path):
    world = World(tmp_path)
    world.add("a.enc", "--key-file", world.old_a)
    done = subprocess.run([sys.executable, ROTATE, "--old-key-file=-h", f"--new-key-file={world.new}", "--dry-run",
                           str(world.dir)], capture_output=True, env=rotate_env(), cwd=tmp_path, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (64, b"", MISSING % ((b"rotate", b"--key-file") * 2))
    assert (world.dir / "a.enc").read_bytes() == world.originals["a.enc"]


# --- encpipe-migrate ------------------------------------------------------------------------------


def _migrate(tmp_path, *argv):
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": python_env()["PYTHONPATH"],
           "ENCPIPE": f"{shlex.quote(sys.executable)} -m encpipe"}
    return subprocess.run([sys.executable, MIGRATE, *argv, str(tmp_path / "d")], capture_output=True, env=env,
                          cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("option", ["--legacy-key-file", "--key-file", "--sign-key"])
def test_migrate_takes_a_key_file_named_like_an_option_for_a_file(tmp_path, option, name):
    expected = make_backups(tmp_path / "d", {"a_backup.sql.enc": "hex-key.sql.enc"}, python_made=False)
    files = {"--legacy-key-file": tmp_path / "old.key", "--key-file": tmp_path / "new.key"}
    _secret(files["--legacy-key-file"], HEX_KEY + "\n")
    _secret(files["--key-file"], NEW_KEY + "\n")
    argv, sign_id = [], None
    if option == "--sign-key":
        sign_id = _signing_key(tmp_path / name)
        argv = [f"--sign-key={name}"]
    else:
        os.rename(files[option], tmp_path / name)
        files[option] = name
    done = _migrate(tmp_path, *(f"{o}={f}" for o, f in files.items()), *argv)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    report = {r["file"]: r for r in map(json.loads, done.stdout.splitlines())}["a_backup.sql.enc"]
    assert report["status"] == "migrated", report
    path = tmp_path / "d" / "a_backup.sql.enc"
    assert sha(open_new(str(path))) == expected["a_backup.sql.enc"]
    inspected = json.loads(ok(encpipe_run(["inspect", "--json"], path.read_bytes())))
    assert inspected.get("signers", []) == ([sign_id] if sign_id else []), inspected


def test_migrate_names_its_own_option_and_the_file_when_one_named_like_an_option_holds_no_key(tmp_path):
    make_backups(tmp_path / "d", {"a_backup.sql.enc": "hex-key.sql.enc"}, python_made=False)
    before = (tmp_path / "d" / "a_backup.sql.enc").read_bytes()
    _secret(tmp_path / "new.key", NEW_KEY + "\n")
    _secret(tmp_path / "--help", "not a key\n")
    done = _migrate(tmp_path, "--legacy-key-file=--help", "--key-file=new.key")
    assert (done.returncode, done.stdout, done.stderr) == (
        64, b"", b"encpipe-migrate: error: --legacy-key-file: --help, line 1: a key must be 64 hex characters, not 9\n")
    assert (tmp_path / "d" / "a_backup.sql.enc").read_bytes() == before


# --- encpipe-backup and encpipe-restore -----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_backup_and_restore_take_a_key_file_named_like_an_option_for_a_file(pg, tools, key_file, tmp_path, name):
    db = ensure_small(pg, "argwords_source")
    _copy(key_file, tmp_path / name)
    env = script_env(pg, tools)
    made = run([BACKUP, "--dir", "b", "--key-file", name, "--keep-last", "3", db], env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr.decode()
    path = tmp_path / "b" / json.loads(made.stdout)["filename"]
    if "argwords_copy" in databases(pg):
        pg.dropdb("argwords_copy")
    done = run([RESTORE, "--key-file", name, path, "argwords_copy"], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b"encpipe-restore: restored %s into new database argwords_copy\n" % bytes(path)
    assert dump(pg, "argwords_copy") == dump(pg, db)
    pg.dropdb("argwords_copy")


def test_a_database_named_double_dash_is_backed_up(pg, tools, key_file, tmp_path):
    """DBNAME after -- may be "--" itself: the backup's later steps take it for the
    database's name, not for the end of their options."""
    if "--" not in databases(pg):
        pg.createdb("--")
        pg.psql("CREATE TABLE t (v text); INSERT INTO t VALUES ('dashes');", db="--")
    made = run([BACKUP, "--dir", tmp_path / "b", "--key-file", key_file, "--compress", "none", "--keep-last", "3",
                "--", "--"],
               script_env(pg, tools))
    assert made.returncode == 0, made.stderr.decode()
    report = json.loads(made.stdout)
    assert (report["database"], report["filename"][:3]) == ("--", "--_"), report
    sealed = (tmp_path / "b" / report["filename"]).read_bytes()
    assert b"dashes" in ok(encpipe_run(["open", "--key-file", key_file], sealed))


# --- secrets on descriptors, named in one word ----------------------------------------------------


def test_a_descriptor_named_in_one_word_is_lent_and_only_to_a_child_that_names_it():
    read_end, write_end = os.pipe()
    os.write(write_end, b"the key\n")
    os.close(write_end)
    try:
        secrets = FdSecrets({"--key-file": ["/dev/fd/%d" % read_end]}, ("--key-file",))
        for argv in (["open", "--key-file=/dev/fd/%d" % read_end], ["rewrap", "--add-key-file=/dev/fd/%d" % read_end],
                     ["open", "--key-file", "/dev/fd/%d" % read_end]):
            with secrets.lend(argv) as lent:
                assert lent == [read_end], argv
                assert os.readlink("/proc/self/fd/%d" % read_end).startswith("/memfd:encpipe-secret")
            assert os.readlink("/proc/self/fd/%d" % read_end) == "/dev/null"
        for argv in (["open", "--key-file=/dev/fd/%d9" % read_end], ["open", "x=/dev/fd/%d" % read_end],
                     ["open", "--key-file=/proc/self/fd/%d" % read_end]):
            with secrets.lend(argv) as lent:
                assert lent == [], argv
    finally:
        os.close(read_end)


def _with_spy(tmp_path, argv, fds, cwd=None, env=None):
    spy, log = tmp_path / "encpipe-spy", tmp_path / "encpipe.log"
    write(spy, "encpipe", [sys.executable, "-m", "encpipe"], log)
    done = subprocess.run(argv, capture_output=True, env={**(env or rotate_env()), "ENCPIPE": str(spy)},
                          pass_fds=fds, cwd=cwd, timeout=120)
    return done, records(log)


def _assert_lent_by_name(children, values, fd):
    """Each child names every value given in one word (--option=VALUE), never alone,
    and holds the secret's copy at `fd` exactly when a word of it names /dev/fd/`fd`."""
    for child in children:
        argv = child["argv"]
        assert not set(values) & set(argv), argv
        named = any(w.startswith("--") and w.endswith("=/dev/fd/%d" % fd) for w in argv)
        lent = child["fds"].get(str(fd)) == "/memfd:encpipe-secret (deleted)"
        assert named == lent, child


def test_rotate_lends_a_key_on_a_descriptor_to_the_children_that_name_it(tmp_path):
    world = World(tmp_path)
    world.add("a.enc", "--key-file", world.old_a)
    read_end, write_end = os.pipe()
    os.write(write_end, open(world.new, "rb").read())
    os.close(write_end)
    try:
        given = "/dev/fd/%d" % read_end
        done, children = _with_spy(tmp_path, [sys.executable, ROTATE, "--old-key-file", world.old_a,
                                               "--new-key-file", given, str(world.dir)], (read_end,))
    finally:
        os.close(read_end)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    assert lines(done)["a.enc"]["status"] == "rotated"
    assert [c["argv"][0] for c in children] == ["keyid", "keyid", "inspect", "rewrap", "inspect"]
    _assert_lent_by_name(children, [world.old_a, given], read_end)
    assert ok(encpipe_run(["open", "--key-file", world.new], (world.dir / "a.enc").read_bytes())) == \
        world.plain["a.enc"]


def test_migrate_lends_a_key_on_a_descriptor_to_the_children_that_name_it(tmp_path):
    expected = make_backups(tmp_path / "d", {"a_backup.sql.enc": "hex-key.sql.enc"}, python_made=False)
    _secret(tmp_path / "new.key", NEW_KEY + "\n")
    read_end, write_end = os.pipe()
    os.write(write_end, HEX_KEY.encode() + b"\n")
    os.close(write_end)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": python_env()["PYTHONPATH"]}
    try:
        given = "/dev/fd/%d" % read_end
        done, children = _with_spy(tmp_path, [sys.executable, MIGRATE, "--legacy-key-file", given, "--key-file",
                                               str(tmp_path / "new.key"), str(tmp_path / "d")], (read_end,), env=env)
    finally:
        os.close(read_end)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    assert {r["file"]: r for r in map(json.loads, done.stdout.splitlines())}["a_backup.sql.enc"]["status"] == \
        "migrated"
    assert sorted(c["argv"][0] for c in children) == ["inspect", "keyid", "keyid", "open", "seal"]
    _assert_lent_by_name(children, [given, str(tmp_path / "new.key")], read_end)
    key = encpipe.RawKey(bytes.fromhex(NEW_KEY))
    assert sha(open_new(str(tmp_path / "d" / "a_backup.sql.enc"), key)) == expected["a_backup.sql.enc"]


def test_restore_lends_a_key_on_a_descriptor_to_the_children_that_name_it(pg, tools, key_file, tmp_path):
    db = ensure_small(pg, "argwords_source")
    env = script_env(pg, tools)
    made = run([BACKUP, "--dir", tmp_path / "b", "--key-file", key_file, db], env)
    assert made.returncode == 0, made.stderr.decode()
    path = tmp_path / "b" / json.loads(made.stdout)["filename"]
    if "argwords_copy" in databases(pg):
        pg.dropdb("argwords_copy")
    read_end, write_end = os.pipe()
    os.write(write_end, read_key(key_file).encode() + b"\n")
    os.close(write_end)
    try:
        given = "/dev/fd/%d" % read_end
        done, children = _with_spy(tmp_path, [RESTORE, "--key-file", given, str(path), "argwords_copy"],
                                   (read_end,), env=env)
    finally:
        os.close(read_end)
    assert done.returncode == 0, done.stderr.decode()
    # keyid runs beside the opens that start early (the restore's key check): in any order
    assert sorted(c["argv"][0] for c in children) == ["keyid", "open", "open"]
    _assert_lent_by_name(children, [given], read_end)
    assert dump(pg, "argwords_copy") == dump(pg, db)
    pg.dropdb("argwords_copy")
