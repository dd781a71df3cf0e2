"""A restore's run lock (pgleftovers.RunLock) and the scratch databases of other runs:
PostgreSQL's advisory locks belong to the database they are taken in."""


def test_a_live_runs_scratch_database_is_left_alone_by_a_restore_of_another_maintenance_db(pg, monkeypatch):
    """README: a restore drops only the scratch databases of runs that are gone, known by their
    lock. Before, a run's lock, taken in its --maintenance-db, was no other database's: a
    restore with another one took it too, and dropped the scratch database of a live run (one
    that no session used just then: made, not yet loaded, or loaded, not yet swapped in),
    whose restore then failed. Once that run is gone, its scratch database is dropped."""
    from encpipe import pgleftovers

    for name, value in pg.env.items():
        monkeypatch.setenv(name, value)
    alive = "encpipe_restore_20250101T020000Z_11"  # a live run's (its lock held), made just now, no session yet
    pg.psql('CREATE DATABASE "%s"' % alive)
    try:
        with pgleftovers.RunLock("postgres", alive) as running:
            running.take()
            with pgleftovers.RunLock("template1", "encpipe_restore_20250101T020001Z_12") as later:
                later.take()
                dropped, busy = later.clean("template1")
            assert (dropped, busy) == ([], [])
        with pgleftovers.RunLock("template1", "encpipe_restore_20250101T020002Z_13") as later:
            later.take()
            assert later.clean("template1") == ([alive], [])
    finally:
        pg.psql('DROP DATABASE IF EXISTS "%s"' % alive)
