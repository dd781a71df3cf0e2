"""An empty option value or argument (`-o ""`, `--dir=`, an unset shell variable)
is a usage error (64; encpipe-check's UNKNOWN, 3) for encpipe and every script, never the same as leaving
it out: `keygen -o ""` printed the key on standard output, `seal -o ""` wrote
there, `encpipe-prune --dir ""` pruned $ENCPIPE_BACKUP_DIR or ./backups. And an
ENCPIPE the scripts cannot split into a command is 64 too, not a traceback."""

import subprocess
from pathlib import Path

import pytest

from cliutil import KEY_A, key_env, run, seal
from encpipe.backup import cli as backup_cli
from fuzz.craft import clean_env

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"


def _assert_usage_error(code, stdout, stderr, prog, name):
    lines = stderr.splitlines()
    if prog == "encpipe-check":  # the plugin's UNKNOWN, its message on standard output too (test_check_plugin.py)
        assert (code, stdout) == (3, f"UNKNOWN: {lines[0].partition(': error: ')[2]}\n".encode()), stderr
    else:
        assert (code, stdout) == (64, b""), stderr
    assert lines[0] == f"{prog}: error: {name} needs a value, not an empty one" or \
        lines[0] == f"{prog}: error: {name} is empty", stderr
    assert len(lines) == 2 and lines[1].startswith(f"{prog}: hint: "), stderr


@pytest.mark.parametrize("args, name", [
    (["keygen", "-o", ""], "--output"),
    (["keygen", "--x25519", "--output="], "--output"),
    (["seal", "-o", ""], "--output"),
    (["seal", "--key-file="], "--key-file"),
    (["seal", "--chunk-size", ""], "--chunk-size"),
    (["open", "--passphrase-file", ""], "--passphrase-file"),
    (["open", ""], "FILE"),
    (["inspect", "--json", ""], "FILE"),
    (["rewrap", "--in-place", ""], "--in-place"),
    (["rewrap", "--add-key-file="], "--add-key-file"),
    (["keyid", "--signer", ""], "--signer"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else a)
def test_encpipe_refuses_an_empty_value(args, name):
    stdin = seal(b"data") if args[0] in ("open", "rewrap") else b"data"
    done = run(args, stdin, key_env())
    _assert_usage_error(done.code, done.stdout, done.stderr, "encpipe", name)


@pytest.mark.parametrize("args, name", [
    (["prune", "--keep-last", "0", "--dir", ""], "--dir"),
    (["prune", "--keep-last", "0", ""], "DIR"),
    (["list", "--dir="], "--dir"),
    (["verify", ""], "PATH"),
    (["check", "--max-age", "1", "--metrics-file", "", "DIRECTORY"], "--metrics-file"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else a)
def test_backup_commands_refuse_an_empty_value_and_touch_nothing(tmp_path, args, name):
    import io

    folder = tmp_path / "backups"
    folder.mkdir()
    backup = folder / "db_20200101T000000Z.sql.enc"
    backup.write_bytes(seal(b"SELECT 1;\n"))
    out, err = io.BytesIO(), io.StringIO()
    args = [str(folder) if a == "DIRECTORY" else a for a in args]
    code = backup_cli.main(args, stdout=out, stderr=err, env={"ENCPIPE_BACKUP_DIR": str(folder), "ENCPIPE_KEY": KEY_A})
    _assert_usage_error(code, out.getvalue(), err.getvalue(), f"encpipe-{args[0]}", name)
    assert backup.exists()


@pytest.mark.parametrize("script, args, name", [
    ("encpipe-backup", ["--dir", "", "db"], "--dir"),
    ("encpipe-backup", ["--to=", "db"], "--to"),
    ("encpipe-backup", ["--metrics-file", "", "--dir", "DIRECTORY", "db"], "--metrics-file"),
    ("encpipe-restore", ["--identity", "", "FILE", "db"], "--identity"),
    ("encpipe-restore", ["", "db"], "FILE or DBNAME"),
    ("encpipe-restore", ["FILE", ""], "FILE or DBNAME"),
    ("encpipe-rotate", ["--old-key-file", "", "--new-key-file", "KEY", "DIRECTORY"], "--old-key-file"),
    ("encpipe-rotate", ["--old-key-file", "KEY", "--new-key-file", "KEY", ""], "DIR"),
    ("encpipe-migrate", ["--legacy-key-file", "", "DIRECTORY"], "--legacy-key-file"),
    ("encpipe-migrate", [""], "DIR"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else a)
def test_scripts_refuse_an_empty_value(tmp_path, script, args, name):
    done, folder, sealed = _run_script(tmp_path, script, args, {"ENCPIPE_KEY": KEY_A})
    lines = done.stderr.decode().splitlines()
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert lines and lines[0] in (f"{script}: error: {name} needs a value, not an empty one",
                                  f"{script}: error: {name} is empty"), done.stderr
    assert sorted(p.name for p in folder.iterdir()) == [sealed.name]


@pytest.mark.parametrize("script, args", [
    ("encpipe-rotate", ["--old-key-file", "KEY", "--new-key-file", "KEY", "DIRECTORY"]),
    ("encpipe-migrate", ["--key-file", "KEY", "DIRECTORY"]),
    ("encpipe-restore", ["--key-file", "KEY", "FILE", "db"]),
])
def test_an_encpipe_command_with_an_unbalanced_quote_is_64(tmp_path, script, args):
    """ENCPIPE, the encpipe command the scripts run, that shlex cannot split."""
    done, folder, sealed = _run_script(tmp_path, script, args, {"ENCPIPE": 'python3 -m "encpipe'})
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode().splitlines() == [f"{script}: error: ENCPIPE: cannot split it into a command: "
                                                 "No closing quotation"]
    assert sorted(p.name for p in folder.iterdir()) == [sealed.name]


def _run_script(tmp_path, script, args, env):
    """`script` run on a backup directory of one sealed file (DIRECTORY, FILE) with
    a key file (KEY): (its CompletedProcess, the directory, the file)."""
    folder = tmp_path / "backups"
    folder.mkdir(mode=0o700)
    key = tmp_path / "key"
    key.write_text(KEY_A + "\n")
    key.chmod(0o600)
    sealed = folder / "db_20200101T000000Z.sql.enc"
    sealed.write_bytes(seal(b"SELECT 1;\n"))
    names = {"DIRECTORY": str(folder), "KEY": str(key), "FILE": str(sealed)}
    env = clean_env({"PYTHONPATH": str(REPO), "PGHOST": str(tmp_path / "no-server"), **env})
    done = subprocess.run([str(SCRIPTS / script), *[names.get(a, a) for a in args]], capture_output=True,
                          env=env, timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path)
    return done, folder, sealed
