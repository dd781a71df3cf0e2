"""README's claims outside the file format, checked against what the commands do:
an option's range, an example's output, the exit statuses the scripts use, the
encpipe command the Python scripts run. Each test fails when its claim becomes
false; the README text it checks is quoted in its docstring."""

import subprocess
import sys
from pathlib import Path

from test_backup_restore import backup, ensure_awkward, make_key, python_env

REPO = Path(__file__).parent.parent


def encpipe(*argv, **kw):
    return subprocess.run([sys.executable, "-m", "encpipe", *map(str, argv)], capture_output=True, check=True,
                          env=python_env(), **kw)


# --- Backing up: --compress-level ----------------------------------------------


def zstd_window_log(plaintext):
    """The window log of the first zstd frame after the label's skippable frame."""
    assert plaintext[:4] == b"\x50\x2a\x4d\x18"
    frame = plaintext[8 + int.from_bytes(plaintext[4:8], "little"):]
    assert frame[:4] == b"\x28\xb5\x2f\xfd"
    descriptor = frame[4]
    assert not descriptor & 0x20, "single segment: no window descriptor"  # a pipe: size unknown
    return 10 + (frame[5] >> 3)


def test_zstd_compress_level_22_is_level_22_not_19(pg, tools, tmp_path):
    """README: `--compress-level N` (zstd 0 to 22, ...). zstd takes levels 20 to 22
    only with --ultra: without it, `zstd -q -22` compresses at 19, silently. Level 22
    streams with a 2^27 window, level 19 with 2^23."""
    key = make_key(tmp_path / "k")
    db = ensure_awkward(pg)
    path, _ = backup(pg, tools, str(tmp_path / "b"), db, "--compress", "zstd", "--compress-level", "22",
                     "--key-file", key)
    plaintext = encpipe("open", "--key-file", key, path).stdout
    assert zstd_window_log(plaintext) == 27
