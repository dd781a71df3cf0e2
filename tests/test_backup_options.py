"""encpipe-backup's command line fails closed before anything runs: a flag
given a value (`--no-globals=1`), an option given twice (`--dir A --dir B`,
`--keep-last 1 --keep-last 2`) and a malformed retention policy are usage
errors (64) before pg_dump starts, and nothing is stored. encpipe-restore
refuses an option given twice too."""

import pytest

from test_backup_restore import (
    BACKUP,
    ensure_small,
    run,
    script_env,
)


@pytest.mark.parametrize("args, message", [
    (["--no-globals=1"], "--no-globals takes no value"),
    (["--progress=yes"], "--progress takes no value"),
    (["--count-unauthenticated=no"], "--count-unauthenticated takes no value"),
    (["--allow-shared-dir=0"], "--allow-shared-dir takes no value"),
    (["--dir", "OTHER"], "--dir given more than once"),
    (["--compress", "gzip", "--compress", "none"], "--compress given more than once"),
    (["--keep-last", "1", "--keep-last", "2"], "--keep-last given more than once"),
    (["--keep-last", "abc"], "--keep-last must be a whole number from 0, not 'abc'"),
    (["--keep", "1", "--keep-last", "2"], "--keep is --keep-last: give one of them"),
    (["--max-age", "soon"], "--max-age must be a number from 0 to 1000000, not 'soon'"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else None)
def test_a_mistake_is_64_before_the_dump(pg, tools, key_file, tmp_path, args, message):
    db = ensure_small(pg, "bk_small")
    directory, other = tmp_path / "b", tmp_path / "other"
    args = [str(other) if a == "OTHER" else a for a in args]
    proc = run([BACKUP, "--dir", directory, "--key-file", key_file, *args, db], script_env(pg, tools))
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr
    lines = proc.stderr.decode().splitlines()
    assert lines[0] == f"encpipe-backup: error: {message}", lines
    assert len(lines) <= 2 and all(line.startswith("encpipe-backup: hint: ") for line in lines[1:]), lines
    assert not directory.exists() and not other.exists()


@pytest.mark.parametrize("option, values", [
    ("--role", ["a", "b"]),
    ("--maintenance-db", ["postgres", "template1"]),
    ("--globals", ["a.enc", "b.enc"]),
    ("--drop-pre-restore-older-than", ["1", "2"]),
    ("--threads", ["1", "2"]),  # one for encpipe open
])
def test_restore_refuses_an_option_given_twice(tmp_path, option, values):
    from fuzz.craft import clean_env
    from test_backup_restore import RESTORE, python_env

    env = {**clean_env(python_env()), "PGHOST": str(tmp_path)}
    proc = run([RESTORE, "--key-file", tmp_path / "key", option, values[0], f"{option}={values[1]}",
                tmp_path / "f.enc", "db"], env)
    assert (proc.returncode, proc.stdout) == (64, b""), proc.stderr
    assert proc.stderr.decode().splitlines() == [f"encpipe-restore: error: {option} given more than once",
                                                 "encpipe-restore: hint: see encpipe-restore --help"]


@pytest.mark.parametrize("option", ["--key-file", "--passphrase-file", "--passphrase-fd"])
def test_backup_a_secret_on_a_closed_descriptor_is_66_before_anything(pg, tools, tmp_path, option):
    """Descriptor 3 closed (run() leaves it so): before, encpipe-backup opened DIR
    for its lock under that number and read the directory as the key (`cannot read
    /dev/fd/3: Is a directory`); now 66, as for encpipe, before DIR is made."""
    db = ensure_small(pg, "bk_small")
    directory = tmp_path / "b"
    value = "3" if option == "--passphrase-fd" else "/dev/fd/3"
    proc = run([BACKUP, "--dir", directory, option, value, db], script_env(pg, tools))
    assert (proc.returncode, proc.stdout) == (66, b""), proc.stderr
    assert proc.stderr.decode().splitlines() == [
        "encpipe-backup: error: cannot read file descriptor 3: Bad file descriptor"]
    assert not directory.exists()
