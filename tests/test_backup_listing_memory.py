"""A listing's memory per file: encpipe-list and encpipe-verify over a directory of
many files keep each file's record compact and write their JSON as it is encoded,
never one string of the whole document (README, "Listing, pruning and verifying
backups")."""

import json
import os
from io import BytesIO, StringIO

import pytest

from cliutil import measure_peak_rss
from encpipe.backup.cli import main
from encpipe.backup.listing import Entry
from encpipe.backup import records
from encpipe.backup.records import Item
from encpipe.backup.verify import Kept
from test_backup_dir import ROOT, make_valid, run

MANY = 20000
# Peak RSS growth allowed from 10 files to MANY: about 1.2 KiB a file. A listing
# that builds a dict per file and the whole indented document at once takes ~3.4.
GROWTH_KIB = 24 * 1024


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
    made = {}
    for count in (10, MANY):
        directory = tmp_path_factory.mktemp(f"files{count}")
        for n in range(count):  # empty files, not backup-named: each is listed, none is read past its start
            open(os.path.join(directory, f"f{n:05d}"), "w").close()
        made[count] = directory
    return made


@pytest.mark.parametrize("script, extra", [("list", []), ("verify", ["--allow-empty"])])
def test_peak_memory_per_listed_file_stays_small(directories, tmp_path, script, extra):
    env = dict(os.environ, ENCPIPE_KEY="00" * 32, PYTHONPATH=ROOT)
    peaks = {}
    for count, directory in directories.items():
        argv = [os.path.join(ROOT, "scripts", f"encpipe-{script}"), *extra, str(directory)]
        code, peaks[count] = measure_peak_rss(argv, tmp_path / f"rss{count}", env=env,
                                              stdout=open(tmp_path / f"out{count}", "wb"))
        assert code == 0
    listing = json.loads((tmp_path / f"out{MANY}").read_bytes())
    assert len(listing if script == "list" else listing["results"]) == MANY
    assert peaks[MANY] - peaks[10] < GROWTH_KIB, peaks


def test_json_is_the_indented_document_byte_for_byte(tmp_path):
    make_valid(tmp_path, "db_20240101T000000Z.dump.enc")
    (tmp_path / "notes.txt").write_text("not a backup\n")
    (tmp_path / "empty").write_bytes(b"")
    for argv in (["list", str(tmp_path)], ["list", "--stats", str(tmp_path)], ["verify", str(tmp_path)]):
        out = BytesIO()
        assert main(argv, stdout=out, stderr=StringIO(), env={"ENCPIPE_KEY": bytes(range(32)).hex()}) == 0
        assert out.getvalue() == (json.dumps(json.loads(out.getvalue()), indent=2) + "\n").encode()
    assert run("list", str(tmp_path))[1][0]["slots"] == ["raw-key"]


def test_a_listed_files_records_hold_no_per_object_dict_and_behave_as_dataclasses():
    """Item and Entry (records.slotted): their fields in __slots__, no __dict__ per
    object, defaults, equality and repr as the dataclass had them; verify's Kept: the
    values alone, the keys shared by every result of the same shape, the dict again
    on output, its keys in their order."""
    item = Item("a.enc", 3)
    assert Item.__slots__ == Item._fields == ("name", "size", "error", "unreadable", "identity", "link",
                                              "mtime", "uid") and not hasattr(item, "__dict__")
    assert (item.error, item.link, item.mtime) == (None, False, None) and item == Item("a.enc", 3)
    assert repr(item).startswith("Item(name='a.enc', size=3, error=None")
    with pytest.raises(AttributeError):
        item.other = 1
    assert not hasattr(Entry.__new__(Entry), "__dict__")
    first, second = Kept({"path": "a", "ok": True, "status": "sealed"}), Kept({"path": "b", "ok": False, "status": "x"})
    assert first.keys is second.keys and not hasattr(first, "__dict__")
    assert (second["path"], second["ok"], second["status"]) == ("b", False, "x")
    assert json.dumps([first], default=Kept.to_json) == '[{"path": "a", "ok": true, "status": "sealed"}]'


def test_records_behave_as_the_dataclasses_they_replace():
    """records.record, which spares every script the import of dataclasses (and of
    inspect behind it): a frozen record refuses assignment and hashes by its values,
    an unfrozen one has no hash; a Factory default is made for each record; replace
    copies with changes and refuses a field that is not one; a field without a
    default after one with a default is refused when the class is made."""
    from encpipe.backup.records import FrozenRecord, replace
    from encpipe.backup.retention import Decision, Policy, Record

    policy = Policy(3)
    assert (policy.last, policy.daily, policy.max_age) == (3, None, None) and repr(policy).startswith("Policy(last=3,")
    with pytest.raises(FrozenRecord):
        policy.last = 4
    with pytest.raises(AttributeError):
        del policy.daily
    assert hash(policy) == hash(Policy(3)) and {policy, Policy(3), Policy(4)} == {Policy(3), Policy(4)}
    first, second = Decision(Record("a", ("db", "plain"), None), "keep"), Decision(None, "remove")
    first.reasons.append("x")
    assert (first.reasons, second.reasons) == (["x"], []) and Decision.__hash__ is None
    changed = replace(first.record, state="failed", run=True)
    assert (changed.name, changed.state, changed.run, first.record.state) == ("a", "failed", True, "ok")
    assert changed != first.record and changed == Record("a", ("db", "plain"), None, state="failed", run=True)
    with pytest.raises(TypeError):
        replace(changed, other=1)
    with pytest.raises(TypeError):
        records.record(type("Bad", (), {"__annotations__": {"a": int, "b": int}, "a": 1}))


@pytest.mark.xfail(strict=True, reason="a planted file under a backup's name with a long database name is "
                   "kept at about 2.3 KiB by prune (1.7 by verify, 1.4 by list), over README's 1 KiB a file: "
                   "20,000 took 46 MiB more than 10 where README says under 24")
def test_files_planted_under_long_backup_names_stay_within_the_per_file_bound(tmp_path):
    """README: a listing keeps a compact record per file, under 1 KiB, 20,000 files
    taking less than 24 MiB more than 10. A writer of the directory plants files under
    backup names (a database name of 200 bytes, each file garbage after encpipe's magic):
    the prune that fails them all keeps each within that bound too (here 2,500 files,
    under an eighth of it: 3 MiB)."""
    env = dict(os.environ, ENCPIPE_KEY="00" * 32, PYTHONPATH=ROOT)
    peaks = {}
    for count in (5, 1250):
        directory = tmp_path / f"d{count}"
        directory.mkdir()
        for n in range(count):
            stamp = f"2020010{1 + n // 86400}T{n // 3600 % 24:02d}{n // 60 % 60:02d}{n % 60:02d}Z"
            for kind in ("sql.zst", "globals.sql"):
                (directory / f"{'s' * 200}_{stamp}.{kind}.enc").write_bytes(b"ENCPIPE" + b"\xff" * 50)
        argv = [os.path.join(ROOT, "scripts", "encpipe-prune"), "--dry-run", "--keep-last", "1", str(directory)]
        code, peaks[count] = measure_peak_rss(argv, tmp_path / f"rss{count}", env=env,
                                              stdout=open(tmp_path / f"out{count}", "wb"),
                                              stderr=open(tmp_path / f"err{count}", "wb"))
        assert code == 65
    assert peaks[1250] - peaks[5] < GROWTH_KIB // 8, peaks
