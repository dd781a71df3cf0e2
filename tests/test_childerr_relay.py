"""childerr's relay of a child's standard error at LINE_MAX: a longer line is read
in pieces, and a piece may end inside a UTF-8 character."""

import subprocess
import sys

from encpipe import childerr


def _relay(text):
    """(what the relay passed on, (error, hint)) for a child that writes `text` (str) on stderr."""
    out = _Out()
    proc, said = childerr.started(subprocess.Popen, [sys.executable, "-c", f"import sys; sys.stderr.write({text!r})"],
                                  stderr_of=childerr.ChildStderr(out=out))
    proc.wait()
    kept = said.wait()
    return out.text, kept


class _Out:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_a_long_warning_is_passed_on_as_written_whatever_its_characters():
    # 2-byte characters after an odd-length prefix: a LINE_MAX piece ends inside one
    line = "encpipe: warning: x" + "\u00e9" * (3 * childerr.LINE_MAX) + "\n"
    passed, kept = _relay(line + "encpipe: warning: \u20ac\n")
    assert (passed, kept) == (line + "encpipe: warning: \u20ac\n", (None, None))


def test_a_long_error_is_kept_without_a_broken_last_character():
    passed, (error, hint) = _relay("encpipe: error: x" + "\u00e9" * (3 * childerr.LINE_MAX) + "\nencpipe: hint: h\n")
    assert (passed, hint) == ("", "h")
    assert error == "x" + "\u00e9" * ((childerr.LINE_MAX - len("encpipe: error: x")) // 2)

