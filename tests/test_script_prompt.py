"""-p in the scripts: encpipe-backup asks twice on the terminal (as seal does)
and seals with that passphrase; encpipe-restore asks once, although it runs
encpipe more than once."""

import os
import shlex

from test_backup_restore import (
    BACKUP,
    MARKERS,
    RESTORE,
    databases,
    dir_entries,
    ensure_small,
    run,
    script_env,
)
from test_prompt import run_on_terminal


def _backup_on_terminal(pg, tools, directory, db, answers):
    command = shlex.join([BACKUP, "--no-globals", "-p", "--work-factor", "10", "--dir", directory, db])
    return run_on_terminal(command, answers, env=script_env(pg, tools))


def test_backup_prompts_twice_and_restore_once(pg, tools, tmp_path):
    db = ensure_small(pg, "bk_prompt")
    directory = str(tmp_path / "b")
    status, screen = _backup_on_terminal(pg, tools, directory, db, ["tty pw", "tty pw"])
    assert status == 0, screen
    assert screen.count("passphrase: ") == 1 and screen.count("passphrase again: ") == 1, screen
    marker, name = dir_entries(directory)  # the cluster's marker sorts first
    assert marker == ".encpipe-cluster"
    path = os.path.join(directory, name)
    opened = run(["encpipe", "open", path], script_env(pg, tools, ENCPIPE_PASSPHRASE="tty pw"))
    assert opened.returncode == 0, opened.stderr.decode()
    assert run(["encpipe", "open", path], script_env(pg, tools, ENCPIPE_PASSPHRASE="other")).returncode == 77

    command = shlex.join([RESTORE, "--no-globals", "-p", path, "bk_prompt_back"])
    status, screen = run_on_terminal(command, ["tty pw", "tty pw", "tty pw"], env=script_env(pg, tools))
    assert status == 0, screen
    assert screen.count("passphrase: ") == 1, screen
    assert MARKERS[0] in pg.psql("SELECT v FROM t WHERE id = 1", db="bk_prompt_back")


def test_backup_with_mismatched_answers_stores_nothing(pg, tools, tmp_path):
    db = ensure_small(pg, "bk_prompt")
    directory = str(tmp_path / "b")
    status, screen = _backup_on_terminal(pg, tools, directory, db, ["one", "two"])
    assert status == 64, screen
    assert "do not match" in screen
    assert [n for n in dir_entries(directory) if ".enc" in n] == []


def test_restore_with_a_wrong_answer_creates_nothing(pg, tools, tmp_path):
    db = ensure_small(pg, "bk_prompt")
    directory = str(tmp_path / "b")
    assert _backup_on_terminal(pg, tools, directory, db, ["right", "right"])[0] == 0
    marker, name = dir_entries(directory)  # the cluster's marker sorts first
    assert marker == ".encpipe-cluster"
    before = databases(pg)
    command = shlex.join([RESTORE, "--no-globals", "-p", os.path.join(directory, name), "bk_prompt_wrong"])
    status, screen = run_on_terminal(command, ["wrong"], env=script_env(pg, tools))
    assert status == 77, screen
    assert databases(pg) == before
