"""A file that encpipe-migrate or encpipe-rotate cannot convert is reported in ONE
line, its JSON line, with the encpipe child's reason folded in. Migrate let its
children's `encpipe: error:` and `hint:` lines through to standard error and
said only "encpipe open --legacy failed with status 77" in the file's line; now
the child's error is in `reason`, its hint in `hint`, and standard error holds
nothing for it. Rotate already folded the child's error into `error`: shown
here, and kept so."""

import json
import os
import shutil

import pytest
from test_migrate import FAILING_SEAL, HERE, VECTORS, migrate
from test_rotate import CHUNK, World, lines, rotate

FAILING_VERIFY = """#!/bin/sh
if [ "$1" = inspect ]; then
  cat > /dev/null
  echo "encpipe: warning: a warning passes" >&2
  echo "encpipe: error: chunk 0 failed authentication" >&2
  echo "encpipe: hint: a hint" >&2
  exit 65
fi
eval exec "$REAL_ENCPIPE" '"$@"'
"""


def _directory(tmp_path, source):
    directory = tmp_path / "backups"
    directory.mkdir()
    shutil.copyfile(os.path.join(VECTORS, source), directory / "a.sql.enc")
    return directory


def test_migrate_a_file_no_key_opens_is_one_line_with_the_childs_reason_and_hint(tmp_path, keys):
    directory = _directory(tmp_path, "wrong-key.sql.enc")
    status, lines_, err = migrate(directory, keys=keys)
    assert (status, err) == (77, "")
    [line] = lines_
    assert line == {"file": "a.sql.enc", "status": "failed", "exit_code": 77,
                    "reason": "encpipe open --legacy failed with status 77: no supplied key authenticates this "
                              "legacy file", "hint": line.get("hint")}
    assert line["hint"].startswith("the key is wrong, or the file is damaged or truncated"), line


def test_migrate_a_seal_that_fails_is_one_line_with_the_childs_reason(tmp_path, keys):
    directory = _directory(tmp_path, "hex-key.sql.enc")
    failing = tmp_path / "failing"
    failing.write_text(FAILING_SEAL)
    failing.chmod(0o700)
    status, lines_, err = migrate(directory, keys=keys, encpipe=str(failing))
    assert (status, err, lines_) == (74, "", [{
        "file": "a.sql.enc", "status": "failed", "exit_code": 74,
        "reason": "encpipe seal failed with status 74: cannot write output: No space left on device"}])


def test_migrate_a_new_file_that_fails_verification_is_one_line_its_warnings_passed_on(tmp_path, keys):
    directory = _directory(tmp_path, "hex-key.sql.enc")
    before = (directory / "a.sql.enc").read_bytes()
    failing = tmp_path / "failing"
    failing.write_text(FAILING_VERIFY)
    failing.chmod(0o700)
    status, lines_, err = migrate(directory, keys=keys, encpipe=str(failing))
    assert (status, err, lines_) == (65, "encpipe: warning: a warning passes\n", [{
        "file": "a.sql.enc", "status": "failed", "exit_code": 65, "hint": "a hint",
        "reason": "encpipe inspect --verify of the new file failed with status 65: chunk 0 failed authentication"}])
    assert sorted(os.listdir(directory)) == ["a.sql.enc"] and (directory / "a.sql.enc").read_bytes() == before


WARNING_OPEN = """#!/bin/sh
if [ "$1" = open ]; then
  echo "encpipe: warning: open's warning" >&2
  : > "$OPENED"
fi
eval exec "$REAL_ENCPIPE" '"$@"'
"""

# seal cannot be started (once open has written its warning); a child's standard error is
# relayed only once its ChildStderr is waited for: what is not waited for is never said
NO_SEAL = """
import errno, os, subprocess, time
import encpipe.childerr

_execute_child, _relay = subprocess.Popen._execute_child, encpipe.childerr.ChildStderr._relay


def _no_seal(self, args, *rest):
    if "seal" in args:
        while not os.path.exists(os.environ["OPENED"]):
            time.sleep(0.01)
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
    return _execute_child(self, args, *rest)


def _when_waited(self):
    self._ended.wait()
    _relay(self)


subprocess.Popen._execute_child, encpipe.childerr.ChildStderr._relay = _no_seal, _when_waited
"""


def test_migrate_a_seal_that_cannot_start_is_one_line_opens_warnings_passed_on(tmp_path, keys):
    """Before, open's warnings were not waited for when seal could not start, as they are
    when it fails: the run went on (here: ended) without them."""
    directory = _directory(tmp_path, "hex-key.sql.enc")
    before = (directory / "a.sql.enc").read_bytes()
    stand_in, site = tmp_path / "encpipe", tmp_path / "site"
    stand_in.write_text(WARNING_OPEN)
    stand_in.chmod(0o700)
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_SEAL)
    status, lines_, err = migrate(directory, keys=keys, encpipe=str(stand_in), env={
        "OPENED": str(tmp_path / "opened"), "PYTHONPATH": os.pathsep.join([str(site), os.path.dirname(HERE)])})
    assert (status, err, lines_) == (74, "encpipe: warning: open's warning\n", [{
        "file": "a.sql.enc", "status": "failed", "exit_code": 74,
        "reason": "Resource temporarily unavailable: a.sql.enc"}])
    assert sorted(os.listdir(directory)) == ["a.sql.enc"] and (directory / "a.sql.enc").read_bytes() == before


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def test_rotate_a_file_rewrap_refuses_is_one_line_with_the_childs_reason(world):
    world.add("a.enc", "--key-file", world.old_a, size=3 * CHUNK)
    good = world.originals["a.enc"]
    cut = good[:len(good) - (CHUNK + 16)]  # a whole chunk gone: header and sizes still look fine
    (world.dir / "a.enc").write_bytes(cut)
    done = rotate(world.args())
    assert (done.returncode, done.stderr) == (1, b"encpipe-rotate: error: 1 file(s) could not be rotated\n")
    assert [json.loads(line) for line in done.stdout.decode().splitlines()] == [lines(done)["a.enc"]]
    record = lines(done)["a.enc"]
    assert (record["status"], record["step"], record["exit"]) == ("error", "rewrap", 65)
    assert record["error"] == "truncated stream: it ends before its final chunk", record
