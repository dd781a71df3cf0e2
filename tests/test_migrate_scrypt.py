"""encpipe-migrate and the scrypt work of planted files (README, "Resource limits").

A run over many files must not let a writer of the directory make it take hours
with files of costly passphrase slots. encpipe-migrate never tries a slot of a
file it did not make: a file that starts with encpipe's magic (v1 or v2,
whatever its slots) is skipped before any key is used, and a file of the
previous tool has no slot (its passphrase goes through a fixed PBKDF2, the
same for every file). The only scrypt it runs is that of the new files it seals
and verifies itself. The test counts scrypt evaluations in every encpipe child
(through ENCPIPE), not time."""

import json
import os
import shlex
import shutil
import struct
import subprocess
import sys

import fuzz.craft as craft
from cliutil import write_secret
from test_migrate import HERE, MIGRATE, MANIFEST, VECTORS

from encpipe.slots import Passphrase

DEFAULT_COST = (18, 8, 1)
DECOY = b"\x11" * 12  # the planted slots' salts start so: never opened, so no real scrypt is needed for them

# encpipe, counting scrypt evaluations (one salt per line in $SCRYPT_LOG)
COUNTING = """import os
from encpipe import slots
real = slots.scrypt_kek
def counting(passphrase, salt, log2_n, r, p):
    with open(os.environ["SCRYPT_LOG"], "a") as log:
        log.write(salt.hex() + "\\n")
    return b"\\x00" * 32 if salt.startswith(bytes.fromhex("{decoy}")) else real(passphrase, salt, log2_n, r, p)
slots.scrypt_kek = counting
from encpipe.cli import run
run()
""".format(decoy=DECOY.hex())


def planted(number, count=8):
    extra = [(craft.SLOT_SCRYPT, craft.scrypt_body(*DEFAULT_COST, salt=DECOY + struct.pack(">HH", number, n)))
             for n in range(count)]
    return craft.seal_with(b"a planted dump\n", [Passphrase(b"theirs", 10, 8, 1)], extra=extra)


def test_planted_files_of_costly_passphrase_slots_cost_migrate_no_scrypt(tmp_path):
    directory = tmp_path / "backups"
    directory.mkdir()
    legacy = "hex-key.sql.enc"
    shutil.copyfile(os.path.join(VECTORS, legacy), directory / "old_backup.sql.enc")
    for n in range(6):  # legacy names, encpipe content: eight default-cost slots each, within a file's budget
        (directory / f"planted_{n}.sql.enc").write_bytes(planted(n))
    wrapper, log = tmp_path / "counting.py", tmp_path / "scrypt.log"
    wrapper.write_text(COUNTING)
    old_key = write_secret(tmp_path / "old.key", MANIFEST[legacy]["setting"].encode() + b"\n")
    new_pass = write_secret(tmp_path / "new.pass", b"the new passphrase\n")
    done = subprocess.run(
        [sys.executable, MIGRATE, "--legacy-key-file", str(old_key), "--passphrase-file", str(new_pass),
         "--work-factor", "10", str(directory)], capture_output=True, text=True, timeout=300,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join([os.path.dirname(HERE), HERE]),
             "ENCPIPE": f"{shlex.quote(sys.executable)} {shlex.quote(str(wrapper))}", "SCRYPT_LOG": str(log)})
    assert done.returncode == 0, done.stderr
    lines = {line["file"]: line["status"] for line in map(json.loads, done.stdout.splitlines())}
    assert lines == {"old_backup.sql.enc": "migrated", **{f"planted_{n}.sql.enc": "skipped" for n in range(6)}}
    salts = log.read_text().split() if log.exists() else []
    assert not [s for s in salts if bytes.fromhex(s).startswith(DECOY)]  # not one planted slot tried
    assert len(salts) == 2  # the new file's one slot: sealed, then verified
