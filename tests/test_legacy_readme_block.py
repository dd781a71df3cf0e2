"""README's block of "Files from the previous backup tool", its commands run as
written, `...` the old setting. It piped `encpipe open --legacy` into
`psql restored_db`, a database nothing made (`FATAL: database "restored_db" does
not exist`), and without pipefail a key that opened nothing (77) ended as psql's
0, as did every SQL error of a restore into a database already filled."""

import re
import shlex
import subprocess

from test_backup_restore import script_env
from test_docs import section
from test_legacy_restore import old_tool_encrypt

SETTING = "old tool's passphrase"


def legacy_block(setting):
    """The block's lines, its comments dropped, `...` the setting."""
    lines = [line[4:] for line in section("## Files from the previous backup tool").split("\n\n**", 1)[0]
             .splitlines() if line.startswith("    ")]
    return [re.sub(r"\s+#.*$", "", line).replace("=... ", f"={shlex.quote(setting)} ") for line in lines]


def run_until(line, setting, cluster, tools, cwd):
    """bash runs the block as written up to and including the line that has `line`."""
    block = legacy_block(setting)
    upto = next(i for i, text in enumerate(block) if line in text)
    return subprocess.run(["bash", "-c", "\n".join(block[:upto + 1])], cwd=cwd, env=script_env(cluster, tools),
                          capture_output=True, text=True, timeout=120)


def make_old_file(cluster, path):
    cluster.psql("CREATE DATABASE olddb")
    cluster.psql("CREATE TABLE t (x int PRIMARY KEY); INSERT INTO t VALUES (42)", db="olddb")
    done = subprocess.run([cluster.bin("pg_dump"), "olddb"], env=cluster.env, capture_output=True, check=True)
    path.write_bytes(old_tool_encrypt(done.stdout, SETTING))


def test_the_legacy_block_restores_and_fails_when_encpipe_does(empty_cluster, tools, tmp_path):
    make_old_file(empty_cluster, tmp_path / "old.sql.enc")
    proc = run_until("encpipe open --legacy", "not the old setting", empty_cluster, tools, tmp_path)
    assert proc.returncode == 77, proc.stderr
    assert "no supplied key authenticates this legacy file" in proc.stderr
    proc = subprocess.run(["bash", "-c", "\n".join(legacy_block(SETTING))], cwd=tmp_path,
                          env=script_env(empty_cluster, tools), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert empty_cluster.psql("SELECT x FROM t", db="restored_db") == "42\n"
    assert "checked: the whole file (one tag): verified\n" in proc.stdout
    assert ("checked: header and length only: not verified (use --verify with a key to authenticate the file)\n"
            in proc.stdout)
    proc = run_until("encpipe open --legacy", SETTING, empty_cluster, tools, tmp_path)  # into a filled database
    assert proc.returncode != 0, proc.stderr
