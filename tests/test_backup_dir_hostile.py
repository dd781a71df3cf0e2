"""The backup-directory tools against a user who can write the backup directory:
files swapped or grown after they were listed, and names that carry control
characters or bytes that are not UTF-8. Each test names the hole it closes; the
real scripts run where a hang is the failure.
"""

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from cliutil import ok, plugin_text, run, secret_file
from encpipe.backup.storage import Local
from encpipe.backup.names import parse_name
from test_backup_dir import ENV, KEY, LEGACY_AVAILABLE, ROOT, make_corrupt, make_valid, stamp
from test_backup_restore import BACKUP, python_env
from test_migrate import migrate

SCRIPT = {c: os.path.join(ROOT, "scripts", f"encpipe-{c}") for c in ("list", "prune", "verify", "check")}


def script(command, *argv, env=None, timeout=30):
    full = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_")}
    full.update(env or {})
    return subprocess.run([sys.executable, SCRIPT[command], *map(os.fsencode, argv)], capture_output=True,
                          env=full, timeout=timeout, stdin=subprocess.DEVNULL)


def one_line_error(stderr, prog):
    lines = stderr.decode().splitlines()
    assert len(lines) in (1, 2) and lines[0].startswith(f"{prog}: error: "), stderr
    assert "Traceback" not in stderr.decode()
    return lines[0]


def hours_ago(hours, now=None):
    """The name stamp of `hours` before `now` (by default this moment: the suite runs for minutes)."""
    return stamp((now or datetime.now(timezone.utc)) - timedelta(hours=hours))


def three_days(directory):
    """Valid backups of shop in `directory`, made 72, 48 and 24 hours ago: their names, oldest first."""
    names = [f"shop_{hours_ago(h)}.sql.enc" for h in (72, 48, 24)]
    for name in names:
        make_valid(directory, name)
    return names


# --- a file swapped after it was listed ------------------------------------------------


def test_a_name_swapped_for_a_link_to_a_good_backup_never_counts_for_prune(tmp_path):
    """Before: prune listed a regular file, then opened it again by name, following
    links; a writer who swapped a junk file for a link to the newest genuine backup
    (no read access needed, only its size) made it count as the newest, and --keep-last 1 removed
    every genuine backup. Now a file is opened without following links and must be
    the very file listed."""
    d = tmp_path / "b"
    d.mkdir()
    good = three_days(d)
    planted = f"shop_{hours_ago(1)}.sql.enc"
    (d / planted).write_bytes(bytes(os.path.getsize(d / good[-1])))  # its size shows, its bytes need not
    hook = (f'[ "$1" = opening ] && [ "$3" = {planted} ] && ln -sfn {d / good[-1]} {d}/.swap '
            f'&& mv -T {d}/.swap {d / planted}; true')
    done = script("prune", "--keep-last", "1", d, env={**ENV, "ENCPIPE_TEST_HOOK": hook})
    assert done.returncode == 65, done.stderr
    assert sorted(os.listdir(d)) == sorted([good[-1], planted])
    assert os.path.islink(d / planted)
    assert f"left {planted}: failed verification: " in done.stderr.decode()


def test_verify_fails_a_file_swapped_after_it_was_listed(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    make_valid(d, "shop_20240101T000000Z.sql.enc")
    (d / "shop_20240102T000000Z.sql.enc").write_bytes(bytes(os.path.getsize(d / "shop_20240101T000000Z.sql.enc")))
    hook = (f'[ "$1" = opening ] && [ "$3" = shop_20240102T000000Z.sql.enc ] && '
            f'cp {d}/shop_20240101T000000Z.sql.enc {d}/.swap && mv -T {d}/.swap {d}/$3; true')
    done = script("verify", d, env={**ENV, "ENCPIPE_TEST_HOOK": hook})
    assert done.returncode == 66, done.stderr
    assert b"shop_20240102T000000Z.sql.enc changed since it was listed" in done.stderr


def test_a_file_that_grows_while_it_is_read_is_an_error_not_an_endless_read(tmp_path):
    """Before: a file was read to its end, however long it kept growing: the holder
    of a slot appending chunks to a file of its own could keep verify and prune
    reading for ever. Now reading stops at the size listed, and a file that has
    grown past it fails."""
    path = make_valid(tmp_path, "shop_20240101T000000Z.sql.enc")
    store = Local(str(tmp_path))
    [item] = store.list()
    with store.open(item) as src:
        assert len(src.read(100)) == 100
        with open(path, "ab") as more:
            more.write(bytes(1 << 20))
        with pytest.raises(OSError, match="shop_20240101T000000Z.sql.enc changed while it was read"):
            src.read()
    with open(path, "ab") as more:
        more.write(b"x")
    with pytest.raises(OSError, match="changed since it was listed"):
        store.open(item)


@pytest.mark.parametrize("source", ["crm", "shop", "shop rewrapped"])
def test_a_copy_of_a_good_backup_under_a_newer_name_never_counts(tmp_path, source):
    """Before: a copy of another database's backup (or of an older one of the same
    database) under a newer name authenticated, counted as the newest, and
    --keep-last 1 removed every genuine backup of the series: the operator was left
    with crm's dump under shop's name. Now files that share a file key (payload
    salt) are copies: none of them counts or is removed; a copy rewrapped with
    another key added (a new header, the same payload) is one too."""
    d = tmp_path / "b"
    d.mkdir()
    shop = three_days(d)
    crm = f"crm_{hours_ago(96)}.sql.enc"
    make_valid(d, crm)
    original = crm if source == "crm" else shop[0]
    planted = f"shop_{hours_ago(1)}.sql.enc"
    shutil.copy(d / original, d / planted)
    if source == "shop rewrapped":
        other = secret_file(tmp_path, "other.key", "5e" * 32 + "\n")
        (d / planted).write_bytes(ok(run(["rewrap", "--add-key-file", other], (d / original).read_bytes(), ENV)))
    done = script("prune", "--keep-last", "1", "--database", "shop", d, env=ENV)
    assert done.returncode == 65, done.stderr
    report = json.loads(done.stdout)
    assert [k["filename"] for k in report["kept"]] == [shop[-1]]
    assert sorted(r["filename"] for r in report["removed"]) == sorted(set(shop[:2]) - {original})
    assert {left["filename"]: left["reasons"] for left in report["left"]} == {
        planted: [f"the same file as {original}: a copy, never counted"],
        **({original: [f"the same file as {planted}: a copy, never counted"]} if source != "crm" else {})}
    assert os.path.exists(d / original) and os.path.exists(d / planted) and os.path.exists(d / shop[-1])


def test_check_counts_neither_a_copy_nor_a_link_as_a_fresh_backup(tmp_path):
    """Before: a copy of last month's backup, or a link to it, under today's name
    made encpipe-check say OK while no backup had run for a month."""
    d = tmp_path / "b"
    d.mkdir()
    old, copy, link = (f"shop_{hours_ago(h)}.sql.enc" for h in (24 * 30, 2, 1))
    make_valid(d, old)
    shutil.copy(d / old, d / copy)
    os.symlink(d / old, d / link)
    done = script("check", "--max-age", "24", d)
    assert done.returncode == 2 and done.stderr == b""
    assert plugin_text(done.stdout.decode()) == f"CRITICAL: shop: no backup; newest file {link} is a symbolic link\n"
    os.unlink(d / link)
    done = script("check", "--max-age", "24", d)
    assert done.returncode == 2
    assert plugin_text(done.stdout.decode()) == (f"CRITICAL: shop: no backup; newest file {copy} "
                                    f"is the same file as {old}\n")


@pytest.mark.slow
def test_a_backup_does_not_wait_for_ever_for_names_planted_for_every_second(tmp_path):
    """Before: encpipe-backup waited, for as long as they lasted, until this second's
    name was free; a user who can write the directory (a sticky one passes the
    check) planted names for the hours to come and the run hung. Now it gives up
    after 10 s: 74, nothing stored, the planted files untouched."""
    d = tmp_path / "b"
    d.mkdir()
    d.chmod(0o1777)
    key = tmp_path / "k.key"
    key.write_text(bytes(range(32)).hex() + "\n")
    key.chmod(0o600)
    now = datetime.now(timezone.utc)
    planted = {f"shop_{stamp(now + timedelta(seconds=s))}.{kind}.enc"
               for s in range(-5, 120) for kind in ("sql", "sql.zst", "sql.gz", "dump")}
    for name in planted:
        (d / name).write_bytes(b"")
    env = {**python_env(), "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]),
           "ENCPIPE_PYTHON": sys.executable}
    started = time.monotonic()
    done = subprocess.run([BACKUP, "--dir", d, "--key-file", key, "shop"], capture_output=True, env=env, timeout=60)
    assert 10 <= time.monotonic() - started < 30
    assert done.returncode == 74 and done.stdout == b""
    err = done.stderr.decode().splitlines()
    assert len(err) == 2 and err[0].startswith(f"encpipe-backup: error: backup of shop failed (status 74): {d}/shop_")
    assert err[0].endswith(" already exists, as did this backup's names for each second of the last 10 s; "
                           "not overwritten; nothing was stored")
    assert err[1] == "encpipe-backup: hint: files dated in the future were put there: see encpipe-list"
    assert set(os.listdir(d)) == planted


def test_special_files_under_backup_names_hang_nothing_and_are_never_removed(tmp_path):
    """Already safe (a test of it, with the real scripts): a FIFO, a socket, a link
    to /dev/zero and a directory under backup names; each tool opens none of them
    to read, prune leaves them and removes only what the policy drops."""
    d = tmp_path / "b"
    d.mkdir()
    good = [f"shop_{hours_ago(h)}.sql.enc" for h in (48, 24)]
    for name in good:
        make_valid(d, name)
    special = [f"shop_{hours_ago(h)}.sql.enc" for h in (4, 3, 2, 1)]
    os.mkfifo(d / special[0])
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / special[1]))
    os.symlink("/dev/zero", d / special[2])
    (d / special[3]).mkdir()
    try:
        for command, argv, code in (("list", [], 0), ("verify", [], 65), ("check", ["--max-age", "30"], 1),
                                    ("prune", ["--keep-last", "1"], 65)):
            done = script(command, *argv, d, env=ENV, timeout=30)
            assert done.returncode == code, (command, done.stderr)
    finally:
        sock.close()
    assert sorted(os.listdir(d)) == sorted([good[-1], *special])
    report = json.loads(script("list", d).stdout)
    assert {f["filename"]: (f["status"], f["error"]) for f in report if f["filename"] in special} == {
        name: ("foreign", "not a regular file") for name in special[:3]}


def test_migrate_leaves_a_directory_named_like_its_temporary_file(tmp_path, migrate_keys):
    """Before: a directory named like migrate's temporary file (.NAME.migrate-tmp),
    which it removes as left by an interrupted run, made it end in a traceback.
    Now only a regular file is removed; anything else is left, with a warning."""
    d = tmp_path / "m"
    d.mkdir()
    (d / ".x.migrate-tmp").mkdir()
    (d / ".y.migrate-tmp").write_bytes(b"ciphertext")
    status, lines, err = migrate(d, keys=migrate_keys)
    assert (status, lines) == (0, [])
    assert err.splitlines() == [
        "encpipe-migrate: warning: left .x.migrate-tmp: named like a temporary file of this tool, but not a "
        "regular file",
        "encpipe-migrate: warning: removed .y.migrate-tmp, left by an interrupted run"]
    assert os.listdir(d) == [".x.migrate-tmp"]


# --- names ----------------------------------------------------------------------------


def test_a_name_with_a_trailing_newline_is_not_a_backup_name():
    assert parse_name("shop_20240101T000000Z.sql.enc").database == "shop"
    assert parse_name("shop_20240101T000000Z.sql.enc\n").naming is None
    assert parse_name("shop_backup_2024-01-01_00-00-00-000Z.sql.enc\n").naming is None


def test_check_escapes_control_characters_and_bytes_that_are_not_utf8(tmp_path):
    """Before: a database name with ESC or CR went raw into Nagios' output and the
    terminal, and one with a byte that is not UTF-8 was a traceback."""
    d = tmp_path / "b"
    d.mkdir()
    when = hours_ago(2)
    make_valid(d, f"sh\x1b[2Jop_{when}.sql.enc")
    make_valid(d, f"cr\rOK: fake_{when}.sql.enc")
    os.rename(make_valid(d, "x"), os.path.join(os.fsencode(d), b"b\xffd_" + when.encode() + b".sql.enc"))
    done = script("check", "--max-age", "24", d)
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    assert plugin_text(done.stdout.decode("ascii")).splitlines() == [
        f"OK: b\\xffd: newest backup b\\xffd_{when}.sql.enc is 2.0 h old",
        f"OK: cr\\rOK: fake: newest backup cr\\rOK: fake_{when}.sql.enc is 2.0 h old",
        f"OK: sh\\x1b[2Jop: newest backup sh\\x1b[2Jop_{when}.sql.enc is 2.0 h old",
    ]


def test_check_escapes_the_plugin_output_separator_of_a_name(tmp_path):
    """Before: a name's `|` went raw into the plugin output, where Nagios and Icinga
    take what follows for performance data: a database planted as `b|x=1` made the
    rest of its line, and with Nagios every line after it (shop's), vanish from
    the status shown."""
    d = tmp_path / "b"
    d.mkdir()
    when = hours_ago(2)
    for name in (f"a_{when}.sql.enc", f"b|x=1_{when}.sql.enc", f"shop_{when}.sql.enc"):
        (d / name).write_bytes(b"x")
    done = script("check", "--max-age", "24", d)
    assert done.returncode == 2 and done.stderr == b"", done.stderr
    assert plugin_text(done.stdout.decode("ascii")).splitlines() == [
        f"CRITICAL: a: no backup; newest file a_{when}.sql.enc is foreign",
        f"CRITICAL: b\\x7cx=1: no backup; newest file b\\x7cx=1_{when}.sql.enc is foreign",
        f"CRITICAL: shop: no backup; newest file shop_{when}.sql.enc is foreign",
    ]


def test_messages_about_files_are_one_line_whatever_their_names(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    make_valid(d, "shop_20240101T000000Z.sql.enc")
    make_corrupt(d, "x\rencpipe-prune: error: y_20240102T000000Z.sql.enc")
    done = script("prune", "--keep-last", "1", d, env=ENV)
    assert done.returncode == 65
    assert done.stderr.decode().splitlines() == [
        "encpipe-prune: warning: x\\rencpipe-prune: error: y (plain) has no authenticated backup; none of its "
        "files were removed",
        "encpipe-prune: warning: left x\\rencpipe-prune: error: y_20240102T000000Z.sql.enc: "
        "failed verification: chunk 1 failed authentication: the file is corrupt or was tampered with"]
    done = script("verify", d, env=ENV)
    assert done.returncode == 65
    assert done.stderr.decode().count("\n") == 1 and "\r" not in done.stderr.decode()


def _strings(value, key=None):
    """(key, string) for every string of a JSON value, an object's keys included."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield None, k
            yield from _strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, key)
    elif isinstance(value, str):
        yield key, value


def _exact(entry, key):
    """A name as a script takes it from the JSON: `<key>_base64` when there, else the text."""
    if f"{key}_base64" in entry:
        return base64.b64decode(entry[f"{key}_base64"], validate=True)
    return entry[key].encode()


def test_json_reports_stay_ascii_json_whatever_the_names(tmp_path):
    """list, verify and prune print JSON with every name escaped, newlines, escape
    characters and bytes that are not UTF-8 included; every string in it is
    Unicode (no lone surrogate, which a strict parser refuses and jq turns into
    U+FFFD, so that two names read the same): a byte that is not UTF-8 shows as
    `\\xNN`, and `<key>_base64` beside it holds the name's exact bytes. Before,
    such a name was `\\udcff` in the JSON, Python's surrogate for the byte."""
    d = tmp_path / "b"
    d.mkdir()
    make_valid(d, "shop_20240101T000000Z.sql.enc")
    make_valid(d, "sh\x1bop_20240101T000000Z.sql.enc")
    (d / "two\nlines.enc").write_bytes(b"x")
    os.rename(make_valid(d, "x"), os.path.join(os.fsencode(d), b"b\xffd_20240101T000000Z.sql.enc"))
    names = {b"shop_20240101T000000Z.sql.enc", b"sh\x1bop_20240101T000000Z.sql.enc", b"two\nlines.enc",
             b"b\xffd_20240101T000000Z.sql.enc"}
    for command, argv in (("list", []), ("list", ["--stats"]), ("verify", []), ("prune", ["--keep-last", "1"])):
        done = script(command, *argv, d, env=ENV)
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout.isascii() and done.stderr == b""
        report = json.loads(done.stdout)
        for key, text in _strings(report):
            text.encode("utf-8")  # no surrogate
        found = (report["backups"] if argv else report) if command == "list" else (
            report["results"] if command == "verify" else report["kept"])
        assert {_exact(f, "filename") for f in found} == (names if command != "prune" else names - {b"two\nlines.enc"})
        odd = next(f for f in found if f["filename"].startswith("b"))
        assert odd["filename"] == "b\\xffd_20240101T000000Z.sql.enc"
        if command == "verify":
            assert _exact(odd, "path") == os.fsencode(d) + b"/b\xffd_20240101T000000Z.sql.enc"
        else:
            assert (odd["database"], _exact(odd, "database")) == ("b\\xffd", b"b\xffd")
        if argv == ["--stats"]:
            assert report["stats"]["databases"]["b\\xffd"]["key_base64"] == base64.b64encode(b"b\xffd").decode()


# --- copies of files of the previous tool --------------------------------------------


@pytest.mark.skipif(not LEGACY_AVAILABLE, reason="the legacy reader is not available")
@pytest.mark.parametrize("original", ["crm_backup_2020-01-01_00-00-00-000Z.sql.enc",
                                      "shop_backup_2020-01-01_00-00-00-000Z.sql.enc.legacy"])
def test_a_copy_of_a_file_of_the_previous_tool_under_a_backup_name_never_counts(tmp_path, original):
    """Before: copies were told by a sealed file's payload salt only, among files under
    backup names. A file of the previous tool has none, and counts as made by its key:
    a copy of the old tool's crm backup (or of a .legacy original kept by encpipe-migrate) planted
    under a newer shop name authenticated with the legacy key, counted as shop's
    newest, and --keep-last 1 removed every genuine shop backup. Now a legacy file's
    IV tells a copy (it is authenticated: a copy cannot change it), and copies are
    looked for among every file of the location."""
    from encpipe.legacy import seal_legacy

    d = tmp_path / "b"
    d.mkdir()
    shop = three_days(d)
    with open(d / original, "wb") as dst:
        seal_legacy(io.BytesIO(b"DROP TABLE orders;\n" * 100), dst, KEY)
    planted = f"shop_{hours_ago(1)}.sql.enc"
    shutil.copy(d / original, d / planted)
    done = script("prune", "--keep-last", "1", d, env=ENV)
    assert done.returncode == 65, done.stderr
    report = json.loads(done.stdout)
    assert [k["filename"] for k in report["kept"]] == [shop[-1]]
    assert [r["filename"] for r in report["removed"]] == shop[:2]
    assert {left["filename"]: left["reasons"] for left in report["left"]} == {
        planted: [f"the same file as {original}: a copy, never counted"]}
    assert sorted(os.listdir(d)) == sorted([original, planted, shop[-1]])


def test_a_copy_under_a_name_that_is_not_a_backups_still_is_a_copy(tmp_path):
    """A copy of the newest genuine backup kept under another name (not a backup's)
    makes neither count: the file authenticates its content, not its name."""
    d = tmp_path / "b"
    d.mkdir()
    shop = three_days(d)
    planted = f"shop_{hours_ago(1)}.sql.enc"
    shutil.copy(d / shop[0], d / "shop-golden.enc")
    shutil.copy(d / shop[0], d / planted)
    os.unlink(d / shop[0])  # the original is gone, but a copy of it is still there under another name
    done = script("prune", "--keep-last", "1", d, env=ENV)
    assert done.returncode == 65, done.stderr
    report = json.loads(done.stdout)
    assert [k["filename"] for k in report["kept"]] == [shop[-1]]
    assert {left["filename"]: left["reasons"] for left in report["left"]} == {
        planted: ["the same file as shop-golden.enc: a copy, never counted"]}


def test_a_directory_planted_under_the_final_name_fails_the_commit_with_its_own_message(tmp_path):
    """Before: a directory put under the backup's final name just before the rename
    failed the commit as `cannot write output: Is a directory` (74), as if standard
    output had failed. Now the message says which rename failed, and the run ends
    as a failed one does: the temporary file removed, the directory left alone
    (tests/test_backup_commit_failure.py: the globals, the remote, the metrics)."""
    d = tmp_path / "b"
    d.mkdir()
    temp, final = ".encpipe-tmp.20240101T000000Z_1_2", "shop_20240101T000000Z.sql.enc"
    make_valid(d, temp)
    hook = '[ "$1" = renaming ] && mkdir "$2/$4"; true'
    done = subprocess.run([sys.executable, "-m", "encpipe.backup", "commit", "--dir", d, "--database", "shop",
                           "--kind", "sql", "--started", "1", temp, final], capture_output=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": ROOT, "ENCPIPE_TEST_HOOK": hook})
    assert (done.returncode, done.stdout) == (74, b"")
    assert done.stderr.decode() == (f"encpipe-backup: error: backup of shop failed (status 74): cannot rename "
                                    f"{d}/{temp} to {final}: Is a directory; nothing was stored\n")
    assert os.listdir(d) == [final] and os.path.isdir(d / final)


def test_stats_keep_a_database_whose_name_reads_as_another_s_escaped_bytes(tmp_path):
    """`--stats`' databases are keyed by name. A database named `b\\xffd` (UTF-8:
    a backslash, then xffd) and one whose name holds the byte 0xff both read
    `b\\xffd` in JSON: one key, and the other database's entry was dropped (a
    writer of the directory hid a database's backups from --stats with one empty
    name). Now each keeps its entry; the name that is not UTF-8 says its bytes
    in `key_base64`, under a key that is no other's."""
    d = tmp_path / "b"
    d.mkdir()
    make_valid(d, "b\\xffd_20240101T000000Z.sql.enc")
    os.rename(make_valid(d, "x"), os.path.join(os.fsencode(d), b"b\xffd_20240102T000000Z.sql.enc"))
    done = script("list", "--stats", d, env=ENV)
    assert (done.returncode, done.stderr) == (0, b"")
    databases = json.loads(done.stdout)["stats"]["databases"]
    exact = {base64.b64decode(entry["key_base64"]) if "key_base64" in entry else key.encode(): entry
             for key, entry in databases.items()}
    assert sorted(exact) == [b"b\\xffd", b"b\xffd"]
    assert exact[b"b\\xffd"]["newest"]["filename"] == "b\\xffd_20240101T000000Z.sql.enc"
    assert exact[b"b\xffd"]["newest"]["filename_base64"] == base64.b64encode(b"b\xffd_20240102T000000Z.sql.enc").decode()
