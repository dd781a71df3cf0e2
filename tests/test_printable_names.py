"""Two different names never show the same in a message (encpipe.shown.printable):
a backslash is always doubled, so the name holding a backslash and an `n` (or
`x7c`, `xff`) no longer reads as the name holding a newline (a `|`, a byte that
is not UTF-8); and a character U+0080 to U+00FF that is not printable shows as
`\\u00NN`, never as the `\\xNN` of a byte that is not UTF-8."""

import itertools
import os
import subprocess
import sys

from encpipe.shown import plugin_line, printable
from cliutil import plugin_text
from test_backup_dir_hostile import hours_ago, script
from test_backup_restore import python_env


def test_a_newline_and_a_backslash_n_in_a_key_file_s_name_show_apart(tmp_path):
    lines = []
    for name in ("a\nb", "a\\nb"):
        (tmp_path / name).write_text("junk\n")
        (tmp_path / name).chmod(0o600)
        done = subprocess.run([sys.executable, "-m", "encpipe", "seal", "--key-file", name], cwd=tmp_path,
                              env=python_env(), stdin=subprocess.DEVNULL, capture_output=True)
        assert (done.returncode, done.stdout) == (64, b"")
        lines.append(done.stderr.decode())
    assert lines == ["encpipe: error: a\\nb, line 1: a key must be 64 hex characters, not 4\n",
                     "encpipe: error: a\\\\nb, line 1: a key must be 64 hex characters, not 4\n"]


def test_check_shows_a_bar_and_a_backslash_x7c_apart(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    when = hours_ago(2)
    for name in (f"b|x_{when}.sql.enc", f"b\\x7cx_{when}.sql.enc"):
        (d / name).write_bytes(b"x")
    done = script("check", "--max-age", "24", d)
    assert done.returncode == 2 and done.stderr == b"", done.stderr
    assert sorted(plugin_text(done.stdout.decode("ascii")).splitlines()) == [
        f"CRITICAL: b\\\\x7cx: no backup; newest file b\\\\x7cx_{when}.sql.enc is foreign",
        f"CRITICAL: b\\x7cx: no backup; newest file b\\x7cx_{when}.sql.enc is foreign",
    ]


def test_no_two_texts_show_the_same():
    alphabet = ["a", "n", "x", "u", "7", "c", "f", "0", "8", "\\", "\n", "\x1b", "|", "\x80", "\udc80", "\xff",
                "\udcff", "\xa0", "\u2028", "\U000e0001", "é"]
    for show in (printable, plugin_line):
        shown = {}
        for length in range(1, 4):
            for text in map("".join, itertools.product(alphabet, repeat=length)):
                out = show(text)
                assert shown.setdefault(out, text) == text, (text, shown[out], out)
                assert out.isprintable()


def test_a_name_without_a_backslash_or_anything_to_escape_is_as_it_was():
    assert printable("shop_20260101T000000Z.sql.enc") == "shop_20260101T000000Z.sql.enc"
    assert printable("café") == "café"
    assert printable(os.fsdecode(b"b\xffd")) == "b\\xffd"


def test_verify_s_internal_error_shows_a_name_escaped_once(tmp_path, monkeypatch):
    """A bug met while verifying one file is that file's internal error (70). Its
    message was the exception's repr(): a newline in a name became `\\n` there,
    and printable doubled that backslash, so the line showed the name holding a
    backslash and an `n`; a KeyError's name came in quotes. Now the class and the
    exception's own words, escaped once where shown; the JSON holds them as they are."""
    import io
    import json

    from encpipe.backup import verify
    from encpipe.backup.cli import main
    from test_backup_dir import ENV, make_valid

    make_valid(tmp_path, "a_20240101T000000Z.sql.enc")

    def broken(*args, **kwargs):
        raise KeyError("a\nb")

    monkeypatch.setattr(verify.envelope, "open_sealed", broken)
    out, err = io.BytesIO(), io.StringIO()
    assert main(["verify", str(tmp_path)], stdout=out, stderr=err, env=dict(ENV)) == 70
    [result] = json.loads(out.getvalue())["results"]
    assert (result["exit_code"], result["error"]) == (70, "internal error: KeyError: a\nb")
    assert err.getvalue() == (f"encpipe-verify: error: {tmp_path}/a_20240101T000000Z.sql.enc: "
                              "internal error: KeyError: a\\nb\n")
