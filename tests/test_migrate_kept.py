"""encpipe-migrate --keep-originals keeps the very file it converted.

The original is kept as NAME.sql.enc.legacy by a hard link made by name just
before the rename, and the rename then checked that NAME was still the file
converted, unchanged. A user who can write the directory moves the original
aside and puts a file of its own under NAME as the link is made, then moves the
original back: the check passed, the original's last name was renamed over, and
NAME.sql.enc.legacy was the planted file; the original was gone, and the run
said it was kept. Now the kept link must be the file converted (else `failed`,
75, and nothing is replaced)."""

import hashlib
import os

from test_migrate import FEW, make_backups, migrate

NAME = "a_backup.sql.enc"

# $ENCPIPE_TEST_HOOK (encpipe.safefile.hook: step, directory, temporary, name): the
# writer of the directory moves NAME aside once the new file is verified, plants
# its own file there, and puts the original back just before the rename.
HOOK = """
[ "$4" = "$RACE_NAME" ] || exit 0
case "$1" in
verified) mv "$2/$4" "$2/.aside" && printf 'planted' > "$2/$4" ;;
renaming) mv "$2/.aside" "$2/$4" ;;
esac
"""


def digests(directory):
    found = {}
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as f:
                found[name] = hashlib.sha256(f.read()).hexdigest()
    return found


def test_the_kept_original_is_the_file_converted_not_one_put_under_its_name(tmp_path, keys):
    directory = tmp_path / "backups"
    make_backups(directory, FEW, python_made=False)
    with open(directory / NAME, "rb") as f:
        original = hashlib.sha256(f.read()).hexdigest()
    status, lines, err = migrate(directory, "--keep-originals", keys=keys,
                                 env={"ENCPIPE_TEST_HOOK": HOOK, "RACE_NAME": NAME})
    [line] = [line for line in lines if line["file"] == NAME]
    assert (line["status"], line.get("exit_code")) == ("failed", 75), (line, err)
    assert status == 75
    assert "is not the file being converted" in line["reason"]
    assert original in digests(directory).values()  # the original is still there (where the writer put it)
    assert not (directory / (NAME + ".legacy")).read_bytes().startswith(b"ENCPIPE")
    assert not [n for n in os.listdir(directory) if n.endswith(".migrate-tmp")]
    assert [line["status"] for line in lines if line["file"] == "b_backup.sql.enc"] == ["migrated"]
