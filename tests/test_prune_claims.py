"""README claims of "Listing, pruning and verifying backups" that no test checked (a
review of README against behaviour)."""

from datetime import datetime, timedelta, timezone

from test_backup_dir import make_valid, run, stamp


def test_max_age_alone_names_why_each_kept_file_is_kept(tmp_path):
    """README: `reasons` "names the rules that kept a file (`last`, `daily`, `weekly`,
    `monthly`, `newest authenticated`, ...)". With `--max-age` alone ("it keeps everything
    younger") every kept file had `reasons: []`, the newest too, which the newest-authenticated
    rule keeps whatever the policy: a report reader could not tell why a file stays."""
    now = datetime.now(timezone.utc)
    names = [f"shop_{stamp(now - timedelta(hours=h))}.sql.enc" for h in (1, 30, 50, 100)]
    for name in names:
        make_valid(tmp_path, name)
    code, report, err = run("prune", "--max-age", "2", "--dry-run", str(tmp_path))
    assert (code, err) == (0, "")
    assert sorted(r["filename"] for r in report["removed"]) == sorted(names[2:])
    assert sorted(k["filename"] for k in report["kept"]) == sorted(names[:2])
    assert [k["reasons"] for k in report["kept"]] == [["within max-age"]] * 2
