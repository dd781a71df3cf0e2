"""Backups dated some hours before the test that makes them started.

A test module that names its backups so takes conftest's `dated_from_now` fixture
(pytestmark = pytest.mark.usefixtures("dated_from_now")), which calls start()
as each test starts, then dates each name with at() or stamp_at(): the ages
check prints are then whole numbers of hours (it says them to 0.1 h)."""

from datetime import datetime, timedelta, timezone

from test_backup_dir import stamp

_NOW = [None]


def start():
    """Now, to the second: what at() counts back from, until the next test starts."""
    _NOW[0] = datetime.now(timezone.utc).replace(microsecond=0)


def at(hours):
    """The time `hours` before the test started (UTC)."""
    return _NOW[0] - timedelta(hours=hours)


def stamp_at(hours):
    """at(hours) as a backup's name writes it: YYYYmmddTHHMMSSZ."""
    return stamp(at(hours))
