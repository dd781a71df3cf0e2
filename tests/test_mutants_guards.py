"""The guards of retention, verify and check, each broken by hand once (a check
dropped, a comparison flipped) with no test failing: the tests that now see each."""

from datetime import datetime, timedelta, timezone

import pytest

from cliutil import ok, secret_file
from cliutil import run as encpipe
from encpipe.backup import prune as prune_module
from test_backup_dir import KEY, make_valid, names, run, stamp
from test_backup_label_series import dump, put

START = datetime(2023, 1, 1, tzinfo=timezone.utc)


def _verified(monkeypatch):
    """The names prune authenticates (verify_entry), in order."""
    read, real = [], prune_module.verify_entry

    def spy(store, entry, *args, **kwargs):
        read.append(entry.filename)
        return real(store, entry, *args, **kwargs)
    monkeypatch.setattr(prune_module, "verify_entry", spy)
    return read


def test_prune_never_reads_a_future_dated_file(tmp_path, monkeypatch):
    """prune.prune leaves a file named more than 5 minutes ahead alone unread, whatever
    it holds (retention.plan would leave it too): a writer of the location who plants
    many, large, cannot make every prune read them."""
    good = [f"shop_{stamp(START + timedelta(days=i))}.sql.enc" for i in range(3)]
    future = f"shop_{stamp(datetime.now(timezone.utc) + timedelta(minutes=10))}.sql.enc"
    for name in good + [future]:
        make_valid(tmp_path, name)
    read = _verified(monkeypatch)
    code, report, _ = run("prune", str(tmp_path), "--keep-last", "1")
    assert code == 65
    assert sorted(read) == good
    assert [r["filename"] for r in report["left"]] == [future]
    assert [k["filename"] for k in report["kept"]] == [good[-1]]
    assert sorted(names(tmp_path)) == sorted([good[-1], future])


def test_a_copy_of_an_unlabelled_dump_does_not_make_the_series_look_labelled(tmp_path):
    """Only a copy that authenticates as a labelled dump shows its series was labelled
    by its name's time (prune._labelled_copy): a copy of an unlabelled dump (an
    earlier version's), put under an older name by a writer of the location, made
    every later unlabelled dump "named after a labelled backup", and prune kept them
    all, removing nothing, when that copy counted as labelled."""
    dumps = [f"shop_{stamp(START + timedelta(days=i))}.sql.enc" for i in range(4)]
    for name in dumps:
        make_valid(tmp_path, name)  # unlabelled: no label at the start of its plaintext
    copy = f"shop_{stamp(START - timedelta(days=1))}.sql.enc"
    (tmp_path / copy).write_bytes((tmp_path / dumps[0]).read_bytes())
    code, report, _ = run("prune", str(tmp_path), "--keep-last", "1")
    assert code == 65
    assert {r["filename"]: r["reasons"][0] for r in report["left"]} == {
        copy: f"the same file as {dumps[0]}: a copy, never counted",
        dumps[0]: f"the same file as {copy}: a copy, never counted"}
    assert [k["filename"] for k in report["kept"]] == [dumps[3]]
    assert [r["filename"] for r in report["removed"]] == dumps[1:3]
    assert sorted(names(tmp_path)) == sorted([copy, dumps[0], dumps[3]])


@pytest.mark.usefixtures("dated_from_now")
def test_verify_does_not_take_a_label_anyone_with_the_public_key_can_seal_for_the_series(tmp_path):
    """verify refuses an unlabelled dump named after a labelled one of its series only
    when that labelled one's maker is authenticated (verify.refuse_late_unlabelled, as
    prune counts one): a labelled dump sealed to the x25519 public key, which a writer
    of the location can make, planted under an older name, made verify fail every
    genuine unlabelled dump made before labels (65)."""
    public = ok(encpipe(["keygen", "--x25519", "-o", str(tmp_path / "x.id")])).decode().strip()
    genuine = [dump(6, False), dump(5, False)]  # made before labels, with the raw key
    directory = put(tmp_path / "b", *genuine)
    planted, plaintext = dump(7, True)
    (directory / planted).write_bytes(ok(encpipe(["seal", "--recipient", public], plaintext)))
    raw = secret_file(tmp_path, "raw.key", KEY.hex() + "\n")
    code, report, err = run("verify", str(directory), "--key-file", str(raw), "--identity", str(tmp_path / "x.id"),
                            env={})
    assert (code, err) == (0, ""), err
    assert {r["filename"]: (r["ok"], r["sender_authenticated"]) for r in report["results"]} == {
        planted: (True, False), genuine[0][0]: (True, True), genuine[1][0]: (True, True)}
