"""--progress for encpipe-rotate and encpipe-migrate, as for seal, open,
encpipe-backup and encpipe-restore: the lines of the encpipe each runs on a
file, on standard error only; standard output (the JSON report) is the same
byte for byte with and without it."""

import os
import re
import shutil
import subprocess
import sys

from encpipe.progress import human_bytes
from test_migrate import ENCPIPE, FEW, MIGRATE, make_backups
from test_progress import LINE
from test_rotate import SCRIPT as ROTATE, World, rotate_env

PROGRESS = re.compile(LINE.pattern.removeprefix("^encpipe: ").removesuffix("$"))


def progress_lines(stderr, prefix):
    """The progress lines of `stderr` that follow `prefix`, each without it."""
    return [line[len(prefix):] for line in stderr.splitlines()
            if line.startswith(prefix) and PROGRESS.fullmatch(line[len(prefix):].removeprefix("encpipe: "))]


def twice(directory, run):
    """`run(progress)` without --progress, then with it on the same files as they
    were before: the two results."""
    kept = directory.parent / "as-it-was"
    shutil.copytree(directory, kept, symlinks=True)
    plain = run([])
    shutil.rmtree(directory)
    shutil.copytree(kept, directory, symlinks=True)
    return plain, run(["--progress"])


def test_rotate_reports_each_rewrap_on_stderr_only(tmp_path):
    """encpipe-rotate had no --progress: a directory of big files was minutes of silence.
    Each file rotated: rewrap's two passes, then the check of the new file."""
    world = World(tmp_path)
    world.small()
    rotated = {"a-old.enc", "b-old.enc"}
    plain, shown = twice(world.dir, lambda extra: subprocess.run(
        [sys.executable, ROTATE, *extra, *world.args()], capture_output=True, env=rotate_env(), timeout=120))
    assert (plain.returncode, shown.returncode) == (0, 0), shown.stderr.decode()
    assert shown.stdout == plain.stdout and b'"rotated"' in plain.stdout
    assert progress_lines(plain.stderr.decode(), "encpipe-rotate: ") == []
    for name in sorted(world.plain):
        said = progress_lines(shown.stderr.decode(), f"encpipe-rotate: {world.dir / name}: ")
        if name not in rotated:
            assert said == [], name
            continue
        size, plaintext = human_bytes(len(world.originals[name])), human_bytes(len(world.plain[name]))
        labels = [line.split(":")[1].strip() for line in said]
        assert labels == sorted(labels, key=["verifying", "rewrap", "verify"].index), said  # in this order
        finals = [line for line in said if " 100% " in line]
        assert [line.split(" in ")[0] for line in finals] == [
            f"encpipe: verifying: 100% {size} of {size}",  # rewrap's check, then its copy: the file's bytes
            f"encpipe: rewrap: 100% {size} of {size}",
            f"encpipe: verify: 100% {plaintext} of {plaintext}"], said  # the check of the new file
    assert without_progress(shown.stderr) == plain.stderr.decode().splitlines()


def without_progress(stderr):
    return [line for line in stderr.decode().splitlines() if not PROGRESS.search(line)]


def test_migrate_reports_each_seal_on_stderr_only(tmp_path, keys):
    """encpipe-migrate had no --progress either. Each file converted: its seal, then
    the check of the new file, both counted to the file's plaintext size."""
    directory = tmp_path / "backups"
    make_backups(directory, FEW)
    key_args = ["--legacy-key-file", keys["old_key"], "--legacy-passphrase-file", keys["old_pass"],
                "--key-file", keys["new_key"]]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.path.dirname(os.path.dirname(MIGRATE)), "ENCPIPE": ENCPIPE}
    plain, shown = twice(directory, lambda extra: subprocess.run(
        [sys.executable, MIGRATE, *extra, *key_args, str(directory)], capture_output=True, env=env, timeout=120))
    assert (plain.returncode, shown.returncode) == (0, 0), shown.stderr.decode()
    assert shown.stdout == plain.stdout and plain.stdout.count(b'"migrated"') == 3
    assert progress_lines(plain.stderr.decode(), "") == []
    finals = [line for line in progress_lines(shown.stderr.decode(), "") if " 100% " in line]
    sizes = sorted(os.stat(directory.parent / "as-it-was" / name).st_size - 64
                   for name in (*FEW, "py_backup_2025-11-18.sql.enc"))
    for label in ("seal", "verify"):  # each file's seal, then the check of the new file
        totals = sorted(re.search(r" of (.+) in ", line).group(1) for line in finals
                        if line.startswith(f"encpipe: {label}: 100% "))
        assert totals == sorted(human_bytes(size) for size in sizes), shown.stderr.decode()
    assert len(finals) == 6 and [line.split(":")[1] for line in finals] == [" seal", " verify"] * 3, finals
    assert without_progress(shown.stderr) == plain.stderr.decode().splitlines()
