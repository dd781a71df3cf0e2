"""encpipe-backup's prune of --keep... opens the backups with the run's passphrase when
the run was given it on a descriptor (--passphrase-fd N) or asked for it (-p).

The passphrase is read once, before pg_dump starts, and seals the dump and its
globals file; the prune after the rename authenticates each backup of the series
before it counts it. Before, the prune got none of it: every such run stored its
backup, then failed (exit 1, `no key`), pruned nothing, and was recorded as failed,
night after night; the backups it should have removed stayed."""

import os
import shlex

from test_backup_restore import BACKUP, BACKUP_NAME, ensure_small, run, script_env
from test_fd_secrets import pipes
from test_prompt import run_on_terminal

PASSPHRASE = "prune-with-the-run's passphrase 7d1e"


def _dumps(directory):
    return sorted(n for n in os.listdir(directory) if BACKUP_NAME.match(n) and "globals" not in n)


def test_a_passphrase_on_a_descriptor_opens_the_backups_the_prune_counts(pg, tools, tmp_path):
    db = ensure_small(pg, "bk_pass_prune")
    directory = str(tmp_path / "b")
    made = []
    for _ in range(3):
        with pipes(PASSPHRASE.encode() + b"\n") as (fd,):
            proc = run([BACKUP, "--dir", directory, "--work-factor", "10", "--passphrase-fd", str(fd),
                        "--keep-last", "2", db], script_env(pg, tools), pass_fds=(fd,))
        assert (proc.returncode, proc.stderr) == (0, b""), proc.stderr.decode()
        made.append(proc.stdout)
    assert len(_dumps(directory)) == 2
    assert b'"pruned": []' in made[1] and b'"pruned": []' not in made[2], made[2]


def test_an_asked_passphrase_opens_the_backups_the_prune_counts(pg, tools, tmp_path):
    """-p asks once, on the terminal (twice: typed again to confirm), for the seal and the prune."""
    db = ensure_small(pg, "bk_pass_prune_p")
    directory = tmp_path / "b"
    env = script_env(pg, tools)
    command = shlex.join([BACKUP, "--dir", str(directory), "--work-factor", "10", "-p", "--keep-last", "2", db])
    for _ in range(3):
        status, screen = run_on_terminal(f"{command} > {tmp_path / 'line'}", [PASSPHRASE, PASSPHRASE], env=env)
        assert status == 0, screen
        assert screen.count("passphrase") == 2, screen  # asked once (and confirmed), not again by the prune
    assert len(_dumps(directory)) == 2
    assert b'"pruned": []' not in (tmp_path / "line").read_bytes()
