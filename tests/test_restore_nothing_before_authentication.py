"""encpipe-restore opens FILE with `encpipe open --verify-first`: no byte of its SQL
reaches psql, and so the server, before the whole file authenticated, its trailer
and any --signer's signature too. Here a plain dump of several chunks (sealed from
a pipe: 512 KiB chunks) starts with a statement that fails; its last chunk is
damaged, or it is signed by a signer not trusted. A file sealed to an x25519
identity and signed by no one (--allow-unauthenticated) is the one `encpipe open`
would otherwise let out chunk by chunk, as each authenticated (README, "Streaming
and partial output"): psql ran that statement and said so, and stopped the
stream. The restore's one line is its only line, the exit status encpipe
open's, and no database was created."""

import subprocess
import sys

import pytest

from test_backup_restore import databases, leftover_databases, python_env, restore

FIRST = b"SELECT 1/0;\n"  # psql names its error (22012) on standard error, and stops the restore
SQL = FIRST + b"".join(b"-- line %07d of a dump's padding, spread over several chunks\n" % n for n in range(25000))


def _encpipe(*args, data=None):
    return subprocess.run([sys.executable, "-m", "encpipe", *args], input=data, check=True, capture_output=True,
                          env=python_env()).stdout


@pytest.mark.parametrize("how", ["last chunk damaged", "signed by a stranger", "sealed to an identity, damaged"])
def test_no_sql_reaches_the_server_before_the_whole_file_authenticated(pg, tools, key_file, tmp_path, how):
    assert len(SQL) > 3 << 19  # four chunks of 512 KiB
    trusted = _encpipe("keygen", "--sign", "-o", str(tmp_path / "trusted.sign")).decode().strip()
    _encpipe("keygen", "--sign", "-o", str(tmp_path / "stranger.sign"))
    signers = tmp_path / "signers"
    signers.write_text(trusted + "\n")
    signing = str(tmp_path / ("stranger.sign" if how == "signed by a stranger" else "trusted.sign"))
    keys = ["--key-file", key_file, "--signer-file", str(signers)]
    if how.startswith("sealed to an identity"):
        public = _encpipe("keygen", "--x25519", "-o", str(tmp_path / "x.id")).decode().strip()
        sealed = bytearray(_encpipe("seal", "--recipient", public, data=SQL))
        keys = ["--identity", str(tmp_path / "x.id"), "--allow-unauthenticated"]
    else:
        sealed = bytearray(_encpipe("seal", "--key-file", key_file, "--sign-key", signing, data=SQL))
    if how != "signed by a stranger":
        sealed[-(100 << 10)] ^= 1  # in the last chunk (about 300 KiB), well before the trailer
    path = tmp_path / "dump.sql.enc"
    path.write_bytes(bytes(sealed))
    before = databases(pg)
    proc = restore(pg, tools, str(path), "never_restored", "--no-globals", *keys)
    stderr = proc.stderr.decode()
    assert (proc.returncode, proc.stdout) == ((67 if how == "signed by a stranger" else 65), b""), stderr
    assert stderr.startswith(f"encpipe-restore: error: cannot decrypt {path} (status "), stderr
    assert "database never_restored was not created\n" in stderr, stderr
    assert all(line.startswith("encpipe-restore: ") for line in stderr.splitlines()), stderr  # nothing of psql's
    assert databases(pg) == before and leftover_databases(pg) == set()
