"""encpipe-migrate skips a file that is already an encpipe file; one that only starts
with encpipe's 7 magic bytes is not skipped as one.

A legacy file's first bytes are its salt, which nothing authenticates before the
key is derived from it: a writer of the backup directory who set them to `ENCPIPE`
(or a damaged file that reads so) had migrate report the file `skipped`, `already
an encpipe file`, and exit 0, so the operator retired the old key with that backup
never converted and no word of it. Now a file skipped as an encpipe file has an
encpipe header; one that does not is `failed` (65) and the run says so."""

from test_migrate import FEW, make_backups, migrate


def test_a_legacy_file_whose_first_bytes_read_encpipe_is_failed_not_skipped(tmp_path, keys):
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    planted = directory / "a_backup.sql.enc"
    data = bytearray(planted.read_bytes())
    data[:7] = b"ENCPIPE"
    planted.write_bytes(bytes(data))
    status, lines, _ = migrate(directory, keys=keys)
    by_name = {line["file"]: line for line in lines}
    assert by_name["a_backup.sql.enc"]["status"] == "failed", by_name["a_backup.sql.enc"]
    assert by_name["a_backup.sql.enc"]["exit_code"] == 65
    assert by_name["a_backup.sql.enc"]["reason"].startswith("starts as an encpipe file, but is not one: ")
    assert by_name["already-new.sql.enc"] == {
        "file": "already-new.sql.enc", "status": "skipped", "reason": "already an encpipe file"}
    assert by_name["b_backup.sql.enc"]["status"] == "migrated"
    assert status == 65
    assert planted.read_bytes() == bytes(data)  # left as it was
