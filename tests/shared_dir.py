"""Helpers for the shared-directory attacks: a victim file outside the directory,
and a hook ($ENCPIPE_TEST_HOOK) that swaps a name for a symbolic link to it at
one named step of encpipe.safefile.write_atomically."""

import os
import shlex
import stat
import sys
import textwrap

SWAPPER = textwrap.dedent(
    """
    import os, sys
    step, directory, temp, name = sys.argv[1:5]
    if step == os.environ["SWAP_AT"]:
        target = os.path.join(directory, temp if os.environ["SWAP_WHAT"] == "temp" else name)
        if os.path.lexists(target):
            os.unlink(target)
        os.symlink(os.environ["VICTIM"], target)
        with open(os.environ["SWAP_MARKER"], "a") as marker:
            marker.write(step + " " + target + "\\n")
    """
)
STEPS = ["created", "written", "verified", "renaming", "renamed"]


class Victim:
    """A root-only file outside the directory: its content, mode and owner must never change."""

    CONTENT = b"root-only secret\n"

    def __init__(self, path, mode=0o600):
        self.path = str(path)
        with open(self.path, "wb") as f:
            f.write(self.CONTENT)
        os.chmod(self.path, mode)
        self.before = self.state()

    def state(self):
        info = os.stat(self.path)
        with open(self.path, "rb") as f:
            return f.read(), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, info.st_mtime_ns

    def assert_untouched(self):
        now = self.state()
        assert now == self.before, f"{self.path} changed: (content, mode, uid, gid, mtime) {self.before[1:]} -> {now[1:]}"


def shared_directory(path, mode=0o777):
    """A directory every user can write, not sticky (for the --allow-shared-dir runs)."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    return str(path)


def swap_env(tmp_path, victim, step, what):
    """Environment for a child whose safefile hook swaps `what` (temp|final) at `step`."""
    script = tmp_path / "swapper.py"
    script.write_text(SWAPPER)
    marker = tmp_path / "swapped"
    return marker, {
        "ENCPIPE_TEST_HOOK": f'exec {shlex.quote(sys.executable)} {script} "$@"',
        "SWAP_AT": step,
        "SWAP_WHAT": what,
        "VICTIM": victim.path,
        "SWAP_MARKER": str(marker),
    }
