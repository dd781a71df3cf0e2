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
