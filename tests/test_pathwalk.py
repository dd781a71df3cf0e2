"""The one walk (encpipe.pathwalk) by which the key files' judge (keyplace) and
the metrics file's (backup.metrics) follow a path as the kernel does: 40
symbolic links are followed, one more is the kernel's ELOOP, said alike by both
(74) before anything is judged past it."""

import pytest

from encpipe import keyplace
from encpipe.backup import metrics
from encpipe.errors import IOFailure


def _chain(tmp_path, links):
    """tmp_path/c0 -> c1 -> ... -> c`links`, a directory: `links` links on the way."""
    (tmp_path / f"c{links}").mkdir()
    for k in range(links):
        (tmp_path / f"c{k}").symlink_to(f"c{k + 1}")
    return f"{tmp_path}/c0/encpipe.prom"


def test_forty_links_are_followed_and_one_more_is_too_many_levels(tmp_path):
    (tmp_path / "40").mkdir()
    (tmp_path / "41").mkdir()
    followed = _chain(tmp_path / "40", 40)
    assert keyplace.replacer(followed) is None
    assert metrics.refuse_place(followed) is None
    too_many = _chain(tmp_path / "41", 41)
    for judge in (keyplace.replacer, metrics.refuse_place):
        with pytest.raises(IOFailure) as raised:
            judge(too_many)
        assert str(raised.value) == f"cannot examine {too_many}: Too many levels of symbolic links"
