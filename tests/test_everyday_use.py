"""README's "Everyday use" block, its commands run as written. `seal -o` leaves no
file when seal fails, but a pg_dump that fails only ends seal's input early: seal
made a whole, authenticated mydb.sql.enc of what it got (nothing, for a database
that is not there), which opened without an error, and only the pipeline's status
(1, with pipefail) said the dump had failed. The block removes the file then."""

import re
import subprocess

from test_backup_restore import script_env
from test_docs import section


def everyday_block():
    """The block's lines, its comments dropped."""
    lines = [line[4:] for line in section("## Everyday use").splitlines() if line.startswith("    ")]
    return [re.sub(r"\s+#.*$", "", line) for line in lines]


def run_until(line, cluster, tools, cwd):
    """bash runs the block as written up to and including the line that starts `line`."""
    block = everyday_block()
    upto = next(i for i, text in enumerate(block) if text.startswith(line))
    return subprocess.run(["bash", "-c", "\n".join(block[:upto + 1])], cwd=cwd, env=script_env(cluster, tools),
                          capture_output=True, timeout=120)


def test_everyday_use_keeps_no_file_of_a_failed_dump(empty_cluster, tools, tmp_path):
    proc = run_until("pg_dump mydb |", empty_cluster, tools, tmp_path)  # no database mydb: pg_dump fails
    assert proc.returncode == 1, proc.stderr.decode()
    assert b'database "mydb" does not exist' in proc.stderr
    assert not (tmp_path / "mydb.sql.enc").exists()
    (tmp_path / "backup.key").unlink()
    empty_cluster.psql("CREATE DATABASE mydb")
    empty_cluster.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (42)", db="mydb")
    proc = run_until("encpipe open ", empty_cluster, tools, tmp_path)  # the whole block
    assert proc.returncode == 0, proc.stderr.decode()
    assert empty_cluster.psql("SELECT x FROM t", db="restored_db") == "42\n"
    assert oct((tmp_path / "mydb.sql.enc").stat().st_mode & 0o777) == "0o600"
