"""A secret file given as /dev/fd/N with N closed is 66 and says, as README
does, "cannot read file descriptor N: Bad file descriptor", in every script.
Before, encpipe-rotate and encpipe-migrate opened the name /dev/fd/N and said
"No such file or directory" (as if a path were wrong); a --signer-file
/dev/fd/3 was read only once the script had opened /dev/null under number 3
(encpipe-rotate, encpipe-migrate: "/dev/fd/3: no verify key found", 64), and
encpipe-restore said "signer file cannot read /dev/fd/3: No such file or
directory"."""

import shlex
import subprocess
import sys

import pytest

from test_backup_restore import RESTORE, python_env
from test_migrate import MIGRATE
from test_rotate import SCRIPT as ROTATE

BAD = "cannot read file descriptor {n}: Bad file descriptor"


@pytest.mark.parametrize("script, argv, line", [
    (ROTATE, ["--old-key-file", "/dev/fd/3", "--new-key-file", "KEY", "DIR"], "--old-key-file: " + BAD),
    (ROTATE, ["--old-key-file", "KEY", "--new-key-file", "/dev/fd/9", "DIR"], "--new-key-file: " + BAD),
    (ROTATE, ["--old-key-file", "KEY", "--new-key-file", "KEY", "--sign-key", "/dev/fd/3", "DIR"], "--sign-key: " + BAD),
    (ROTATE, ["--old-key-file", "KEY", "--new-key-file", "KEY", "--signer-file", "/dev/fd/3", "DIR"], BAD),
    (MIGRATE, ["--legacy-key-file", "/dev/fd/3", "--key-file", "KEY", "DIR"], "--legacy-key-file: " + BAD),
    (MIGRATE, ["--legacy-key-file", "KEY", "--key-file", "/proc/self/fd/3", "DIR"], "--key-file: " + BAD),
    (MIGRATE, ["--legacy-key-file", "KEY", "--key-file", "KEY", "--signer-file", "/dev/fd/3", "DIR"], BAD),
    (RESTORE, ["--key-file", "KEY", "--signer-file", "/dev/fd/3", "FILE", "db"], BAD),
    # a number over any descriptor's (os.fstat: OverflowError) is closed too, not a traceback
    (ROTATE, ["--old-key-file", "/dev/fd/99999999999", "--new-key-file", "KEY", "DIR"], "--old-key-file: " + BAD),
    (RESTORE, ["--key-file", "KEY", "--signer-file", "/dev/fd/99999999999", "FILE", "db"], BAD),
], ids=lambda a: " ".join(a) if isinstance(a, list) else None)
def test_a_closed_descriptor_is_a_bad_file_descriptor(tmp_path, script, argv, line):
    key = tmp_path / "key"
    key.write_text("11" * 32 + "\n")
    key.chmod(0o600)
    (tmp_path / "dir").mkdir()
    argv = [{"KEY": str(key), "DIR": str(tmp_path / "dir"), "FILE": str(tmp_path / "f.enc")}.get(a, a) for a in argv]
    n = next(a.rsplit("/", 1)[1] for a in argv if "/fd/" in a)
    env = {**python_env(), "ENCPIPE": f"{shlex.quote(sys.executable)} -m encpipe", "PGHOST": str(tmp_path)}
    done = subprocess.run([sys.executable if script != RESTORE else script, *([script] if script != RESTORE else []),
                           *argv], env=env, capture_output=True, timeout=60)  # close_fds: N is closed
    prog = script.rsplit("/", 1)[1]
    assert (done.returncode, done.stdout, done.stderr.decode()) == (66, b"", f"{prog}: error: {line.format(n=n)}\n")
