"""A restore's children that write an endless standard error do not grow the
restore's memory: `encpipe keyid` (the key check at the start, for restore and
migrate) and the fetch helper's rclone had theirs read whole into memory before
the one error line was taken from it. Now at most a line (childerr.LINE_MAX) of
keyid's error is kept, and the end of rclone's (rclonepipe.ERR_TAIL); the rest
is read and dropped. The one-line error is as before."""

import subprocess

from cliutil import measure_peak_rss
from test_backup_restore import RESTORE, python_env

NOISE_MIB = 64
LIMIT_KIB = 48 * 1024  # a restore that stops at the key check takes about 24 MiB


def _stand_in(path, noise, last, status):
    """A command that writes NOISE_MIB of `noise` lines, then `last`, on its standard error."""
    lines = NOISE_MIB * 1024 * 1024 // (len(noise) + 1)
    path.write_text(f"#!/bin/sh\nyes '{noise}' | head -n {lines} >&2\necho '{last}' >&2\nexit {status}\n")
    path.chmod(0o755)
    return str(path)


def _restore(tmp_path, file, env):
    key = tmp_path / "k"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    code, rss = measure_peak_rss([RESTORE, "--key-file", str(key), file, "db"], tmp_path / "rss",
                                 env={**python_env(), **env}, stdin=subprocess.DEVNULL,
                                 stdout=open(tmp_path / "out", "wb"), stderr=open(tmp_path / "err", "wb"))
    assert (tmp_path / "out").read_bytes() == b""
    return code, rss, (tmp_path / "err").read_text()


def test_a_key_check_whose_encpipe_writes_a_huge_stderr_stays_small_and_says_one_line(tmp_path):
    encpipe = _stand_in(tmp_path / "encpipe", "encpipe: warning: noise",
                        "encpipe: error: --key-file: k: holds no key", 66)
    (tmp_path / "db_20250101T000000Z.dump.enc").write_bytes(b"")
    code, rss, err = _restore(tmp_path, str(tmp_path / "db_20250101T000000Z.dump.enc"), {"ENCPIPE": encpipe})
    assert (code, err) == (66, "encpipe-restore: error: --key-file: k: holds no key\n")
    assert rss < LIMIT_KIB


def test_a_fetch_whose_rclone_writes_a_huge_stderr_stays_small_and_says_one_line(tmp_path):
    rclone = _stand_in(tmp_path / "rclone", "rclone noise", "Failed to lsjson: boom", 3)
    code, rss, err = _restore(tmp_path, "r:x/db_20250101T000000Z.dump.enc",
                              {"RCLONE": rclone, "RCLONE_CONFIG": "/dev/null"})
    assert (code, err) == (66, "encpipe-restore: error: cannot fetch r:x/db_20250101T000000Z.dump.enc: cannot list "
                               "r:x: rclone lsjson: Failed to lsjson: boom; nothing was changed\n")
    assert rss < LIMIT_KIB
