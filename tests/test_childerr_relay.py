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



def test_a_label_goes_before_each_line_passed_on_once_however_long():
    """A script that runs a child per file puts the file before each of its lines: at
    each line's start, not before each LINE_MAX piece of a long one."""
    out = _Out()
    long = "encpipe: warning: " + "x" * (3 * childerr.LINE_MAX) + "\n"
    text = long + "encpipe: hint: h\nprogress 10%\rprogress 20%\nencpipe: error: e\nencpipe: hint: eh\n"
    proc, said = childerr.started(subprocess.Popen, [sys.executable, "-c", f"import sys; sys.stderr.write({text!r})"],
                                  stderr_of=childerr.ChildStderr(out=out, label="L: "))
    proc.wait()
    assert (said.wait(), out.text) == (("e", "eh"), "L: " + long + "L: encpipe: hint: h\nL: progress 10%\rprogress 20%\n")


def test_only_the_lines_that_start_so_are_passed_on_even_when_they_come_in_pieces():
    """`only` (encpipe-rotate's check of a new file, with --progress): its progress
    lines are passed on, its warnings and their hints dropped, its error kept; a
    progress line whose start comes first, the rest later, is passed on whole."""
    out = _Out()
    code = ("import sys, time\n"
            "w = lambda t: (sys.stderr.write(t), sys.stderr.flush())\n"
            "w('encpipe: warning: w\\nencpipe: hint: wh\\nencpipe: ver')\n"
            "time.sleep(0.3)\n"
            "w('ify: 1 B\\nencpipe: verify: 2 B\\nencpipe: error: e\\nencpipe: hint: eh\\n')\n")
    proc, said = childerr.started(subprocess.Popen, [sys.executable, "-c", code],
                                  stderr_of=childerr.ChildStderr(out=out, label="L: ", only=b"encpipe: verify: "))
    proc.wait()
    assert (said.wait(), out.text) == (("e", "eh"), "L: encpipe: verify: 1 B\nL: encpipe: verify: 2 B\n")
