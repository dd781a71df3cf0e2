"""README's claims outside the file format, checked against what the commands do:
an option's range, an example's output, the exit statuses the scripts use, the
encpipe command the Python scripts run. Each test fails when its claim becomes
false; the README text it checks is quoted in its docstring."""

import io
import json
import os
import re
import shlex
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from test_backup_dir import ENV, make_valid, stamp
from test_backup_restore import BACKUP, RESTORE, backup, ensure_awkward, make_key, python_env, restore, run, script_env

from encpipe.backup.cli import main as backups_main

REPO = Path(__file__).parent.parent
README = (REPO / "README.md").read_text()
SCRIPTS = REPO / "scripts"


def exit_status_rows():
    """README's "Exit status" table: {code: meaning}, each code as written ("1", "128 + N")."""
    section = README.split("\n## Exit status\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for codes, meaning in re.findall(r"^\| ([0-9N+, ]+) \| (.*) \|$", section, re.M):
        for code in codes.split(","):
            rows[code.strip()] = meaning
    return rows


def encpipe(*argv, **kw):
    return subprocess.run([sys.executable, "-m", "encpipe", *map(str, argv)], capture_output=True, check=True,
                          env=python_env(), **kw)


# --- Backing up: --compress-level ----------------------------------------------


def zstd_window_log(plaintext):
    """The window log of the first zstd frame after the label's skippable frame."""
    assert plaintext[:4] == b"\x50\x2a\x4d\x18"
    frame = plaintext[8 + int.from_bytes(plaintext[4:8], "little"):]
    assert frame[:4] == b"\x28\xb5\x2f\xfd"
    descriptor = frame[4]
    assert not descriptor & 0x20, "single segment: no window descriptor"  # a pipe: size unknown
    return 10 + (frame[5] >> 3)


@pytest.mark.slow
def test_zstd_compress_level_22_is_level_22_not_19(pg, tools, tmp_path):
    """README: `--compress-level N` (zstd 0 to 22, ...). zstd takes levels 20 to 22
    only with --ultra: without it, `zstd -q -22` compresses at 19, silently. Level 22
    streams with a 2^27 window, level 19 with 2^23."""
    key = make_key(tmp_path / "k")
    db = ensure_awkward(pg)
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--compress", "zstd", "--compress-level", "22",
                     "--key-file", key)
    plaintext = encpipe("open", "--key-file", key, path).stdout
    assert zstd_window_log(plaintext) == 27



# its lines joined: an example cut after its `--` was not found (`-- --no-owner -n sales`, refused: 64)
README_DUMP_OPTIONS = re.findall(r"`encpipe-backup (?:DB|shop) -- ([^`]*)`", " ".join(README.split()))


@pytest.mark.parametrize("options", README_DUMP_OPTIONS)
def test_readme_pg_dump_options_make_a_backup_that_restores(pg, tools, tmp_path, options):
    """Each `encpipe-backup DB -- OPTIONS` README gives makes a backup that
    encpipe-restore restores. (`-n public` did not: pg_dump 15 then writes
    `CREATE SCHEMA public`, and the scratch database, from template0, has one.)"""
    db = "readme_options"
    if not pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'"):
        pg.createdb(db)
        pg.psql("CREATE SCHEMA sales; CREATE TABLE sales.orders (n int); INSERT INTO sales.orders VALUES (7);"
                " CREATE TABLE audit_log (line text); INSERT INTO audit_log VALUES ('x');", db=db)
    key = make_key(tmp_path / "k")
    done = run([BACKUP, "--dir", tmp_path / "b", "--key-file", key, db, "--", *options.split()],
               script_env(pg, tools))
    assert done.returncode == 0, done.stderr.decode()
    path = str(tmp_path / "b" / json.loads(done.stdout)["filename"])
    target = "readme_restored"
    pg.dropdb(target)
    done = restore(pg, tools, path, target, "--key-file", key)
    assert done.returncode == 0, done.stderr.decode()
    pg.dropdb(target)


def readme_restore_options():
    """The pg_restore options README's "Options for pg_restore or psql" gives as examples."""
    sentence = README.split("**Options for pg_restore or psql** after `--`: e.g. ", 1)[1].split(" for a custom", 1)[0]
    return re.findall(r"`-- ([^`]*)`", sentence)


@pytest.mark.parametrize("options", readme_restore_options())
def test_readme_pg_restore_options_restore_a_custom_archive(pg, tools, tmp_path, options):
    """Each `-- OPTIONS` README gives for a custom archive restores one."""
    db = "readme_options"
    if not pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'"):
        pg.createdb(db)
    key = make_key(tmp_path / "k")
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--format", "custom", "--key-file", key)
    pg.dropdb("readme_restored")
    done = run([RESTORE, "--key-file", key, path, "readme_restored", "--", *options.split()], script_env(pg, tools))
    assert done.returncode == 0, done.stderr.decode()
    pg.dropdb("readme_restored")

# --- Exit status: what the scripts exit with -----------------------------------


def check(*argv):
    out, err = io.BytesIO(), io.StringIO()
    return backups_main(["check", *argv], stdout=out, stderr=err, env=dict(ENV))


def test_the_exit_status_table_lists_the_statuses_of_encpipe_check(tmp_path):
    """README "Exit status" lists every status: encpipe-check's 1 (warning), 2
    (critical) and 3 (unknown: a usage error) among them."""
    make_valid(tmp_path, f"shop_{stamp(datetime.now(timezone.utc) - timedelta(hours=1))}.sql.enc")
    assert check("--max-age", "26", "--warn-age", "0.5", str(tmp_path)) == 1
    assert check("--max-age", "26", "--database", "crm", str(tmp_path)) == 2
    assert check("--max-age", "26", "--bogus", str(tmp_path)) == 3
    rows = exit_status_rows()
    assert "`encpipe-check`: warning" in rows["1"]
    assert "`encpipe-check`: critical" in rows["2"]
    assert "`encpipe-check`: unknown, a usage error" in rows["3"]


def test_the_exit_status_table_lists_the_status_of_a_rotation_that_left_a_file(tmp_path):
    """README "Exit status": 1 is a script's run that did part of its work (encpipe-rotate:
    a file it could not rotate)."""
    (tmp_path / "d").mkdir(mode=0o700)
    old, new = make_key(tmp_path / "old"), make_key(tmp_path / "new")
    (tmp_path / "d" / "a.enc").write_bytes(encpipe("seal", "--key-file", make_key(tmp_path / "other"),
                                                   input=b"x").stdout)
    done = subprocess.run([sys.executable, SCRIPTS / "encpipe-rotate", "--old-key-file", old, "--new-key-file", new,
                           tmp_path / "d"], capture_output=True, env=python_env())
    assert done.returncode == 1, done.stderr
    assert "`encpipe-rotate`" in exit_status_rows()["1"]


def killed_encpipe(tmp_path, spare=""):
    """An ENCPIPE that is killed by SIGKILL, but for the commands in `spare`, which it runs."""
    path = tmp_path / "encpipe-killed"
    path.write_text(f"#!/bin/sh\ncase \"$1\" in {spare or '-'}) "
                    f"exec {shlex.quote(sys.executable)} -m encpipe \"$@\";; esac\n"
                    "kill -9 $$\n")
    path.chmod(0o755)
    return str(path)


def rotate_world(tmp_path):
    (tmp_path / "d").mkdir(mode=0o700)
    old, new = make_key(tmp_path / "old"), make_key(tmp_path / "new")
    (tmp_path / "d" / "a.enc").write_bytes(encpipe("seal", "--key-file", old, input=b"x").stdout)
    return ["--old-key-file", old, "--new-key-file", new, str(tmp_path / "d")]


def test_a_child_killed_by_a_signal_is_128_plus_n_for_encpipe_rotate(tmp_path):
    """README "Exit status": 128 + N when an encpipe a script needs is killed by signal
    N, as encpipe-restore and encpipe-migrate say it. Before, encpipe-rotate exited
    with -9 (247) when its `encpipe keyid` was killed, and a file's line said `"exit": -9`."""
    argv = [sys.executable, SCRIPTS / "encpipe-rotate", *rotate_world(tmp_path)]
    done = subprocess.run(argv, capture_output=True, env={**python_env(), "ENCPIPE": killed_encpipe(tmp_path)})
    assert (done.returncode, done.stdout) == (137, b"")
    assert done.stderr == b"encpipe-rotate: error: encpipe keyid failed\n"
    done = subprocess.run(argv, capture_output=True,
                          env={**python_env(), "ENCPIPE": killed_encpipe(tmp_path, spare="keyid")})
    assert done.returncode == 1
    line = json.loads(done.stdout)
    assert (line["status"], line["step"], line["exit"]) == ("error", "inspect", 137)
    assert line["error"] == "encpipe inspect failed"
    assert "killed by signal N" in exit_status_rows()["128 + N"]


# --- Rotating a directory: the example's output -----------------------------------


def readme_rotate_example():
    """The JSON lines README shows under its encpipe-rotate example."""
    section = README.split("\n### Rotating a directory: `encpipe-rotate`\n", 1)[1].split("\n### ", 1)[0]
    return [json.loads(line) for line in re.findall(r"^    (\{\"file\": .*\})$", section, re.M)]


def test_the_rotate_example_prints_what_readme_shows(tmp_path):
    """README's encpipe-rotate example: a file under the old key `rotated`, one already
    under the new key and the escrow recipient `skipped`, a README.txt `foreign`, in the
    order rotate prints them, each line with the fields rotate gives it."""
    shown = readme_rotate_example()
    assert [line["status"] for line in shown] == ["foreign", "rotated", "skipped"]
    d = tmp_path / "encpipe"
    d.mkdir(mode=0o700)
    old, new = make_key(tmp_path / "old.key"), make_key(tmp_path / "backup.key")
    escrow = encpipe("keygen", "--x25519", "-o", tmp_path / "escrow.id").stdout.decode().strip()
    names = [os.path.basename(line["file"]) for line in shown]
    (d / names[0]).write_text("not a backup\n")
    (d / names[1]).write_bytes(encpipe("seal", "--key-file", old, input=b"x").stdout)
    (d / names[2]).write_bytes(encpipe("seal", "--key-file", new, "--recipient", escrow, input=b"x").stdout)
    done = subprocess.run([sys.executable, SCRIPTS / "encpipe-rotate", "--old-key-file", old, "--new-key-file", new,
                           "--escrow-recipient", escrow, d], capture_output=True, env=python_env())
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(os.path.basename(p["file"]), p["status"]) for p in printed] == [
        (os.path.basename(s["file"]), s["status"]) for s in shown]
    assert [sorted(p) for p in printed] == [sorted(s) for s in shown]
    assert [p.get("reason") for p in printed] == [s.get("reason") for s in shown]


# --- The encpipe the Python scripts run --------------------------------------------


def test_rotate_and_migrate_run_this_pythons_encpipe_not_paths(tmp_path):
    """README: without ENCPIPE, encpipe-rotate and encpipe-migrate run the encpipe of
    the Python they run on (`-m encpipe`), never whatever `encpipe` PATH finds first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "encpipe").write_text("#!/bin/sh\necho 'not this encpipe' >&2\nexit 99\n")
    (bin_dir / "encpipe").chmod(0o755)
    env = {**python_env(), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, SCRIPTS / "encpipe-rotate", "--dry-run", *rotate_world(tmp_path)],
                          capture_output=True, env=env)
    assert (done.returncode, done.stderr) == (0, b"")
    assert json.loads(done.stdout)["status"] == "would-rotate"
    done = subprocess.run([sys.executable, SCRIPTS / "encpipe-migrate", "--dry-run", "--legacy-key-file",
                           tmp_path / "old", "--key-file", tmp_path / "new", tmp_path / "d"],
                          capture_output=True, env=env)
    assert (done.returncode, done.stderr) == (0, b"")
    for script in ("encpipe-rotate", "encpipe-migrate"):
        section = README.split(f"`{script}`\n", 1)[1].split("\n## ", 1)[0]
        assert "(default `encpipe`" not in section


# --- Synopses ----------------------------------------------------------------------


KEY_OPTIONS = {"--key-file", "--key-command", "--identity", "--passphrase-file", "--passphrase-fd",
               "--passphrase-command", "--recipient", "--recipient-file"}


def readme_synopsis(script):
    """The options of README's synopsis of `script`: its indented lines that start
    `script [` or `script --` and name no path (an example does), and the lines
    that go on from them."""
    options, inside = set(), False
    for line in README.splitlines():
        if re.match(rf"^    {script} (\[|--)", line) and "/" not in line:  # not an example
            inside = True
        elif not re.match(r"^ {6,}\S", line):
            inside = False
        if inside:
            options |= set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", line))
    return options


def script_usage(script):
    """The options the usage of `script --help` names (the lines before the first blank one
    after its usage starts; restore's and migrate's [options]: the option lines too)."""
    text = subprocess.run([SCRIPTS / script, "--help"], capture_output=True, check=True,
                          env=python_env()).stdout.decode()
    usage = text.split("\n\n", 2)[1] if script != "encpipe-rotate" else text.split("\n\n", 1)[0]
    if script == "encpipe-restore":
        usage += text.split("Options:\n", 1)[1]
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", usage)) - {"--help"}


@pytest.mark.parametrize("script", ["encpipe-list", "encpipe-prune", "encpipe-verify", "encpipe-check",
                                    "encpipe-rotate", "encpipe-restore", "encpipe-backup"])
def test_readme_synopsis_names_the_options_the_script_takes(script):
    """README's synopsis of each script names every option its usage does (key
    options as "[key options]"), and none it does not take."""
    shown, taken = readme_synopsis(script), script_usage(script)
    assert shown, script
    assert shown <= taken
    assert taken - KEY_OPTIONS <= shown


def test_the_exit_status_table_says_75_for_a_directory_whose_lock_is_held(tmp_path):
    """README "Exit status" 75: encpipe-backup when DIR's lock is still held after
    ENCPIPE_LOCK_WAIT seconds; encpipe-rotate and encpipe-migrate at once."""
    import fcntl
    args = rotate_world(tmp_path)
    held = os.open(tmp_path / "d", os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        env = {**python_env(), "ENCPIPE_LOCK_WAIT": "0"}
        for argv in ([SCRIPTS / "encpipe-rotate", *args],
                     [SCRIPTS / "encpipe-migrate", "--legacy-key-file", args[1], "--key-file", args[3], args[4]],
                     [SCRIPTS / "encpipe-backup", "--dir", args[4], "--key-file", args[3], "shop"]):
            done = subprocess.run(argv, capture_output=True, env=env)
            assert (done.returncode, done.stdout) == (75, b""), (argv[0], done.stderr)
    finally:
        os.close(held)
    row = exit_status_rows()["75"]
    assert "`encpipe-backup`: DIR's lock still held after `ENCPIPE_LOCK_WAIT` seconds" in row
    assert "`encpipe-rotate`, `encpipe-migrate`: DIR's lock held" in row


# --- Installing: the cipher --version names ---------------------------------------


@pytest.mark.parametrize("package", ["raise ImportError('a broken install')\n", "__version__ = '46.0.3'\n",
                                     "__version__ = '50.0.0'\n"])  # its AEAD module missing: a broken wheel
def test_version_names_the_cipher_in_use_when_cryptography_cannot_be_used(tmp_path, package):
    """README Installing: `encpipe --version` names the one in use. A `cryptography`
    that is installed but cannot be used (broken, or older than 47) leaves seal and
    open on pycryptodome; --version named cryptography, as it only looked the package up."""
    fake = tmp_path / "site" / "cryptography"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(package)
    env = {**python_env(), "PYTHONPATH": f"{fake.parent}:{REPO}"}
    version = subprocess.run([sys.executable, "-m", "encpipe", "--version"], capture_output=True, env=env)
    assert (version.returncode, version.stderr) == (0, b"")
    assert version.stdout.decode().endswith("(cipher: pycryptodome)\n")
    sealed = subprocess.run([sys.executable, "-m", "encpipe", "seal"], input=b"data", capture_output=True,
                            env={**env, "ENCPIPE_KEY": "5d" * 32})
    assert (sealed.returncode, sealed.stderr) == (0, b"")
    assert "`encpipe --version` names the one in use" in README


def test_version_refuses_a_forced_cipher_that_is_not_installed():
    """README Installing: `ENCPIPE_CIPHER=cryptography` forces it, "a forced library
    that cannot be imported is a usage error, exit 64", and `encpipe --version` names
    the one in use. Forced where it is not installed (`pip install .` without the
    `fast` extra), --version said `(cipher: cryptography)`, 0, while seal and open
    refused with 64."""
    hidden = "import sys; sys.modules['cryptography'] = None; import runpy; runpy.run_module('encpipe', run_name='__main__')"
    env = {**python_env(), "ENCPIPE_CIPHER": "cryptography"}
    version = subprocess.run([sys.executable, "-c", hidden, "--version"], capture_output=True, env=env)
    sealed = subprocess.run([sys.executable, "-c", hidden, "seal"], input=b"data", capture_output=True,
                            env={**env, "ENCPIPE_KEY": "5d" * 32})
    assert (sealed.returncode, sealed.stdout) == (64, b"")
    assert (version.returncode, version.stdout, version.stderr) == (64, b"", sealed.stderr)
    assert version.stderr.decode().startswith("encpipe: error: ENCPIPE_CIPHER=cryptography, but it cannot be imported")


@pytest.mark.parametrize("package", ["raise ImportError('a broken install')\n", "__version__ = '46.0.3'\n"])
def test_version_refuses_a_forced_cipher_that_is_installed_but_cannot_be_used(tmp_path, package):
    """As above, for a forced `cryptography` that is installed but cannot be used (broken,
    or older than 47: a distribution's, through --system-site-packages): seal and open
    refused with 64, --version still said `(cipher: cryptography)`, 0. It now reads the
    package's version only, and imports no cipher for a usable one (test_aead.py)."""
    fake = tmp_path / "site" / "cryptography"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(package)
    env = {**python_env(), "PYTHONPATH": f"{fake.parent}:{REPO}", "ENCPIPE_CIPHER": "cryptography"}
    version = subprocess.run([sys.executable, "-m", "encpipe", "--version"], capture_output=True, env=env)
    sealed = subprocess.run([sys.executable, "-m", "encpipe", "seal"], input=b"data", capture_output=True,
                            env={**env, "ENCPIPE_KEY": "5d" * 32})
    assert (sealed.returncode, sealed.stdout) == (64, b"")
    assert (version.returncode, version.stdout, version.stderr) == (64, b"", sealed.stderr)
    assert version.stderr.decode().startswith("encpipe: error: ENCPIPE_CIPHER=cryptography, but it cannot be imported")


def test_a_metrics_file_where_check_would_not_read_it_is_not_written_and_the_run_is_1(pg, tools, tmp_path):
    """README "Monitoring": a metrics file in a directory another user can write,
    sticky or not, is refused before its lock is made there, and its lock is never
    opened through a link; README said 73 and 74, as if the run's status: the
    backup is stored all the same, its JSON line printed, and the run says
    `backup written, but metrics not written: ...`, exit 1."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    done = backup(pg, tools, str(tmp_path / "b"), ensure_awkward(pg), "--key-file", make_key(tmp_path / "k"),
                  "--metrics-file", shared / "encpipe.prom", check=False)
    assert (done.returncode, len(done.stdout.decode().splitlines()), os.listdir(shared)) == (1, 1, [])
    said = (f"backup written, but metrics not written: {shared} can be written by every user (mode o+w), who "
            "could hide a failed backup: encpipe-check would not read the metrics file there")
    assert f"encpipe-backup: error: {said}\n" in done.stderr.decode()
    text = " ".join(README.split("\n### Monitoring: ", 1)[1].split("\n### ", 1)[0].split())
    assert said.replace(str(shared), "DIR") in text and "before the lock is made in it" in text
    (tmp_path / "m").mkdir(mode=0o755)
    (tmp_path / "m" / "encpipe.prom.lock").symlink_to(tmp_path / "elsewhere")
    done = backup(pg, tools, str(tmp_path / "b"), ensure_awkward(pg), "--key-file", str(tmp_path / "k"),
                  "--metrics-file", tmp_path / "m" / "encpipe.prom", check=False)
    assert (done.returncode, len(done.stdout.decode().splitlines())) == (1, 1)
    assert done.stderr.decode().endswith(f"error: backup written, but metrics not written: cannot open "
                                         f"{tmp_path / 'm' / 'encpipe.prom.lock'}: Too many levels of symbolic links\n")
    assert "the lock is never opened through a link or as a FIFO (`metrics not written: ...`, exit 1)" in text
