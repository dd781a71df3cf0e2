"""`--to` takes an rclone REMOTE:PATH, never a local directory.

A `--to` that named no remote (`--to offsite`, the colon forgotten; or a
REMOTE:PATH that also exists as a local path) was taken for a local directory,
written without what `--dir` does for one: no check that another user can
write it (a world-writable directory took the backup, exit 0, where `--dir`
refuses it with 73), no lock, and its JSON line's `remote` naming a local
file as the off-site copy. It is now refused before anything runs: 64, one
line, nothing on stdout, nothing made."""

import json
import os
import subprocess
import sys

import pytest

from test_backup_restore import BACKUP, REPO
from test_rclone_leftovers import fake_env


@pytest.mark.parametrize("given", ["shared", "offsite", "here:up"])
def test_a_to_that_names_no_remote_is_refused(tmp_path, key_file, given):
    work = tmp_path / "work"
    work.mkdir()
    (work / "shared").mkdir(mode=0o777)
    (work / "shared").chmod(0o777)
    (work / "here:up").mkdir()
    before = sorted(os.walk(work))
    done = subprocess.run([BACKUP, "--no-globals", "--to", given, "--key-file", key_file, "shop"],
                          env=fake_env(tmp_path, "echo 'select 1;'\n"), cwd=work, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (64, b""), err
    assert err.splitlines()[0] == (f"encpipe-backup: error: --to: {given} names no rclone remote (REMOTE:PATH)"
                                   + (", and is a local path" if given != "offsite" else ""))
    assert err.count("error: ") == 1, err
    # the colon forgotten (`--to offsite`) is the likely mistake: the hint named only --dir
    assert err.splitlines()[1:] == ["encpipe-backup: hint: an rclone remote is REMOTE:PATH (offsite:backups, "
                                    "its colon and a path in it); a local directory is --dir's"]
    assert sorted(os.walk(work)) == before


def test_the_job_commands_refuse_it_too(tmp_path):
    directory = tmp_path / "d"
    directory.mkdir()
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", "upload", "--to", str(directory), ".encpipe-tmp.x"],
                          env=fake_env(tmp_path, ""), input=b"data", capture_output=True, timeout=60)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode().splitlines()[0] == (f"encpipe-backup: error: --to: {directory} names no rclone "
                                                    "remote (REMOTE:PATH), and is a local path")
    assert os.listdir(directory) == []


def test_a_unit_whose_runs_would_all_be_refused_is_not_made(tmp_path):
    done = subprocess.run([BACKUP, "--systemd-unit", "--to", "offsite"], env=fake_env(tmp_path, ""), cwd=tmp_path,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert (done.returncode, done.stdout) == (64, b""), done.stderr
    assert done.stderr.decode().splitlines()[0] == "encpipe-backup: error: --to: offsite names no rclone remote " \
                                                   "(REMOTE:PATH)"


@pytest.mark.parametrize("name", ["off+site", "ops@vault", "sauvegarde-été", ".hidden"])
def test_every_remote_name_rclone_takes_is_a_remote(tmp_path, key_file, name):
    """A remote's name may hold `+`, `@`, `.` (a first one too) and any letter or digit
    (rclone 1.75: `config name contains invalid characters - may only contain numbers,
    letters, _, -, ., +, @ and space`). Before, encpipe took only ASCII letters, digits,
    `_`, `-`, `.` and space, a `.` never first: `--to off+site:up` was refused (64,
    `names no rclone remote`), and encpipe-list of it read a local directory."""
    bucket, config = tmp_path / "bucket", tmp_path / "rclone.conf"
    bucket.mkdir()
    config.write_text(f"[{name}]\ntype = alias\nremote = {bucket}\n")
    env = fake_env(tmp_path, "echo 'select 1;'\n", RCLONE_CONFIG=str(config))
    done = subprocess.run([BACKUP, "--no-globals", "--to", f"{name}:up", "--key-file", key_file, "shop"], env=env,
                          cwd=tmp_path, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr.decode()
    line = json.loads(done.stdout)
    assert line["remote"] == f"{name}:up/{line['filename']}" and line["key_ids"]
    assert sorted(os.listdir(bucket / "up")) == sorted([line["filename"], ".encpipe-cluster"])
    listed = subprocess.run([sys.executable, str(REPO / "scripts" / "encpipe-list"), f"{name}:up"], env=env,
                            cwd=tmp_path, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    assert (listed.returncode, listed.stderr) == (0, b""), listed.stderr.decode()
    assert [b["filename"] for b in json.loads(listed.stdout)] == [".encpipe-cluster", line["filename"]]


@pytest.mark.parametrize("given", ["./a:b", "{tmp}/x@y:z", "dir/.b:c"])
def test_a_colon_after_a_slash_is_a_local_path_s(tmp_path, given):
    """As rclone reads a path (it looks for a remote's colon only before the first `/`):
    `./a:b` and `/srv/x@y:z` are local paths, which README tells an operator to write
    for a local directory with a colon in its name. encpipe-list reads them as
    directories (66, `cannot read backup directory`), rclone never runs."""
    given = given.format(tmp=tmp_path)
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "encpipe-list"), given],
                          env=fake_env(tmp_path, "", RCLONE="/bin/false"), cwd=tmp_path, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert (done.returncode, done.stdout) == (66, b""), done.stderr
    assert done.stderr.decode() == f"encpipe-list: error: cannot read backup directory {given}: No such file or " \
                                   "directory\n"


@pytest.mark.parametrize("option", ["--dir", "ENCPIPE_BACKUP_DIR"])
@pytest.mark.parametrize("given", ["offsite:bucket/shop", "ops@vault:db"])
def test_a_dir_that_names_a_remote_is_refused(tmp_path, key_file, option, given):
    """The mirror mistake: `--dir offsite:bucket/shop`, the remote given to --dir. Before,
    the backup went to a local directory of that name under the working directory, exit
    0, and nothing left the machine. It is refused before anything runs (64, one line);
    `./offsite:bucket` names a local directory with a colon, as rclone reads one."""
    work = tmp_path / "work"
    work.mkdir()
    env = fake_env(tmp_path, "echo 'select 1;'\n")
    argv = [BACKUP, "--no-globals", "--key-file", key_file, "shop"]
    if option == "--dir":
        argv[1:1] = ["--dir", given]
    else:
        env["ENCPIPE_BACKUP_DIR"] = given
    done = subprocess.run(argv, env=env, cwd=work, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (64, b""), err
    assert err.splitlines() == [
        f"encpipe-backup: error: {option}: {given} names an rclone remote (REMOTE:PATH), not a local directory",
        f"encpipe-backup: hint: give it to --to for the remote; ./{given} is a local directory of that name"]
    assert os.listdir(work) == []
    local = subprocess.run([BACKUP, "--no-globals", "--dir", f"./{given}", "--key-file", key_file, "shop"], env=env,
                           cwd=work, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    assert local.returncode == 0, local.stderr.decode()
    assert [n for n in os.listdir(work / given) if n.endswith(".enc")]
