"""The guards of retention, verify and check, each broken by hand once (a check
dropped, a comparison flipped) with no test failing: the tests that now see each."""

from datetime import datetime, timedelta, timezone

from encpipe.backup import prune as prune_module
from test_backup_dir import make_valid, names, run, stamp

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
