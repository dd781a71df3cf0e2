"""encpipe-restore's server-side decisions (pgcommit, pgroles, pgrights, pgglobals), each
as a pure function: a stand-in for pgclient.Step is the server (what the step's psql
says, what the server is then found to hold), a stub of run_sql the rows the restore
reads; one psql on the session's cluster for a REVOKE's guard. A mutation review made
mutants of each by hand; these passed every earlier test, and fail here: the role step run
outside restricted psql; a drop whose psql never connected said done; the swap said
done when the scratch database had a third name; a globals file's `ALTER ROLE
current_user` kept when the file also created a role "current_user" (the restoring
role's password or attributes changed); its properties of another database kept
when its label was FILE's run; an older run's file under this run's name taken; a
privilege on a parameter of a created role not revoked before its DROP ROLE, or its
REVOKE failing on a role gone meanwhile; sessions of no role on DBNAME not named."""

import pytest

from encpipe import pgcommit, pgglobals, pgroles, pgrights
from encpipe.pgcli import Failure
from encpipe.pgclient import PgError
from test_globals_statements import SMUGGLED

LOST = "server closed the connection unexpectedly"
UNSENT = 'psql: error: connection to server on socket "/nowhere/.s.PGSQL.5432" failed: No such file or directory'


@pytest.fixture
def server(monkeypatch):
    """What the steps' psql and the server then say: `error` (psql's PgError text, None: it succeeded),
    `rows` (what the server holds when asked; a PgError: asking failed); `calls` records (sql, options)."""
    class Server:
        error, rows, calls = None, [], []

    class FakeStep:
        def __init__(self, db):
            pass

        def run(self, sql, **options):
            Server.calls.append((sql, options))
            if Server.error:
                raise PgError(Server.error)

        def outcome(self, look, fields=None):
            if isinstance(Server.rows, PgError):
                raise Server.rows
            return Server.rows

    Server.calls = []
    monkeypatch.setattr(pgcommit, "Step", FakeStep)
    return Server


def test_a_swap_whose_scratch_database_has_a_third_name_is_not_said_swapped(server):
    server.error, server.rows = LOST, [["renamed_meanwhile"]]
    said = []
    with pytest.raises(Failure, match="cannot tell whether it was swapped in"):
        pgcommit.swap("postgres", "SWAP;", "scratch", 1, "live", lambda e: None, lambda *a: said.append(a))
    assert said == []


@pytest.mark.parametrize("rows, swapped", [([["live"]], True), ([["scratch"]], False), ([], None)])
def test_a_swap_whose_psql_died_is_said_as_the_server_holds_it(server, rows, swapped):
    server.error, server.rows = LOST, rows
    said = []
    if swapped:
        pgcommit.swap("postgres", "SWAP;", "scratch", 1, "live", lambda e: None, lambda *a: said.append(a))
        assert said and said[0][1] == "warning"
    else:
        with pytest.raises(Failure, match="could not swap it in" if swapped is False else "cannot tell"):
            pgcommit.swap("postgres", "SWAP;", "scratch", 1, "live", lambda e: None, lambda *a: said.append(a))
    assert server.calls[0][1].get("single_transaction") is True


@pytest.mark.parametrize("error, rows, raised", [
    (UNSENT, [], True),  # never sent: the database is there, whatever a look (not asked) would say
    (LOST, [["1"]], True),  # not dropped
    (LOST, [], False),  # dropped once psql had died
    (LOST, PgError("no answer"), True),  # cannot say
])
def test_a_drop_is_said_failed_only_when_the_database_may_be_there(server, error, rows, raised):
    server.error, server.rows = error, rows
    if raised:
        with pytest.raises(PgError):
            pgcommit.drop("postgres", "old")
    else:
        pgcommit.drop("postgres", "old")


@pytest.mark.parametrize("restrict", [True, False])
def test_the_role_step_runs_in_one_transaction_restricted_as_asked(server, restrict):
    assert pgcommit.roles("postgres", "CREATE ROLE a;", ["a"], (), restrict) is None
    assert server.calls == [("CREATE ROLE a;", {"single_transaction": True, "restrict": restrict})]


def test_a_refused_role_step_is_the_roles_as_they_were_whatever_the_server_has_now(server):
    # another session made role a meanwhile: the step's CREATE ROLE failed, its transaction rolled back
    server.error, server.rows = 'ERROR:  role "a" already exists', [["a"]]
    assert pgcommit.roles("postgres", "CREATE ROLE a;", ["a"], ())[1] == set()
    server.error = LOST  # a lost connection: the server's roles are the outcome
    assert pgcommit.roles("postgres", "CREATE ROLE a;", ["a"], ())[1] == {"a"}


GLOBALS = ["SET standard_conforming_strings = on;", "CREATE ROLE newbie;", "ALTER ROLE newbie WITH LOGIN;"]


@pytest.fixture
def roles(monkeypatch, server):
    """A pgroles.Roles of a cluster with role postgres only, and the lines it says."""
    said = []
    monkeypatch.setattr(pgroles, "run_sql", lambda *a, **k: [["postgres"]])

    def make(create=True):
        made = pgroles.Roles("postgres", lambda text, kind=None: said.append((kind, text)), create=create)
        made.seen({"postgres"})
        return made
    return make, said


def test_no_create_roles_creates_none(roles, server):
    make, said = roles
    made = make(create=False)
    made.create_missing(GLOBALS, "g.sql", True)
    assert server.calls == [] and made.created == []
    assert any("--no-create-roles" in text for _, text in said)


def test_roles_another_session_made_first_are_not_the_restores(roles, server):
    make, _ = roles
    made = make()
    server.error, server.rows = 'ERROR:  role "newbie" already exists', [["newbie"]]
    with pytest.raises(Failure, match="nothing was changed"):
        made.create_missing(GLOBALS, "g.sql", True)
    assert made.created == []


def test_roles_the_server_has_only_some_of_are_not_the_restores(roles, server):
    make, _ = roles
    made = make()
    server.error, server.rows = LOST, [["newbie"]]
    with pytest.raises(Failure, match="nothing was changed"):
        made.create_missing(GLOBALS + ["CREATE ROLE other;"], "g.sql", True)
    assert made.created == []


def test_a_needed_role_the_globals_file_has_is_no_help_with_no_create_roles(roles):
    make, _ = roles
    props = {"name": "d", "owner": "newbie", "acl": None, "settings": []}
    make().check("d", props, GLOBALS, False, False)  # created by the restore
    with pytest.raises(Failure, match="needs role.*newbie"):
        make(create=False).check("d", props, GLOBALS, False, False)


@pytest.mark.parametrize("left, kind", [(set(), None), ({"newbie"}, "error")])
def test_roles_dropped_again_are_said_as_the_server_has_them(roles, server, left, kind):
    make, said = roles
    made = make()
    made.created = ["newbie"]
    server.error, server.rows = LOST, [[name] for name in left]
    made.drop_created()
    assert said[-1][0] == kind, said


@pytest.mark.parametrize("props, needs", [
    ({"acl": []}, 0),  # an empty ACL (no privilege at all) its owner gave: GRANT and REVOKE
    ({"settings": [{"role": None, "config": ["work_mem=64kB"]}]}, 1),
    (None, 0),
])
def test_what_only_a_superuser_may_do(props, needs):
    assert len(pgrights.superuser_needs(props, False, [], "owner")) == needs
    assert pgrights.superuser_needs(props, False, ["newbie"], "owner")[-1] == \
        "to create role(s) newbie from the globals file"


@pytest.mark.parametrize("error", ["ERROR:  must be superuser to alter superuser roles or change superuser attribute",
                                   "ERROR:  must be owner of database live"])
def test_a_swap_refused_a_privilege_hints_at_it(error):
    assert "refused role" in pgrights.swap_hint("u", "live", True, False)(PgError(error))


def test_a_new_database_s_swap_hint_asks_nothing_about_sessions():
    assert pgrights.swap_hint("u", "live", False, False)(PgError("ERROR:  database busy")) is None
    assert "in use" in pgrights.swap_hint("u", "live", True, False)(PgError("ERROR:  database busy"))


@pytest.mark.parametrize("row, named", [
    (["t", "t", "t", "1 "], "1 process(es) of no role"),  # an autovacuum worker's kin, no role: counted alone
    (["t", "t", "t", "0 alice"], "role(s) alice"),
])
def test_sessions_it_may_not_end_are_named(monkeypatch, row, named):
    monkeypatch.setattr(pgrights, "run_sql", lambda *a, **k: [row])
    needs = pgrights.privilege_needs("postgres", "live", True, [], None, True)
    assert len(needs) == 1 and named in needs[0], needs


def test_each_role_it_lacks_is_named_once_a_member_and_once_for_its_rights(monkeypatch):
    monkeypatch.setattr(pgrights, "run_sql", lambda *a, **k: [["t", "t", "t", "f", "f", "0 "]])
    needs = pgrights.privilege_needs("postgres", "live", True, [("o", "MEMBER", "member of o"),
                                                                ("o", "USAGE", "rights of o")], None)
    assert needs == ["member of o"]
    monkeypatch.setattr(pgrights, "run_sql", lambda *a, **k: [["t", "t", "t", "t", "f", "0 "]])
    needs = pgrights.privilege_needs("postgres", "live", True, [("o", "MEMBER", "member of o"),
                                                                ("o", "USAGE", "rights of o")], None)
    assert needs == ["rights of o"]


# each of pgglobals._ROLE_KEYWORDS, written out: a mutant that drops one drops no case
@pytest.mark.parametrize("keyword", ["all", "current_role", "current_user", "none", "public", "session_user", "user"])
def test_an_unquoted_keyword_never_names_a_role_the_globals_file_creates(keyword):
    # `ALTER ROLE current_user ...` is the restoring role's, whatever role "current_user" the file creates
    keep, created, _ = pgglobals.plan(['CREATE ROLE "%s";' % keyword, "ALTER ROLE %s WITH SUPERUSER;" % keyword.upper(),
                                       "GRANT pg_read_server_files TO %s;" % keyword.upper()], set())
    assert created == [keyword] and keep == ['CREATE ROLE "%s";' % keyword]


@pytest.mark.parametrize("statements, kept", [
    (['CREATE ROLE "Mallory";', "ALTER ROLE Mallory WITH SUPERUSER;"], 1),  # unquoted: the existing mallory
    (["CREATE ROLE Newbie;", 'ALTER ROLE "newbie" WITH LOGIN;', "GRANT pg_monitor TO NEWBIE;"], 3),
], ids=["quoted new", "unquoted new"])
def test_an_unquoted_name_is_read_in_lower_case(statements, kept):
    assert pgglobals.plan(statements, {"mallory"})[0] == statements[:kept]


@pytest.mark.parametrize("smuggled", SMUGGLED.values(), ids=SMUGGLED.keys())
def test_sql_smuggled_into_a_kept_statement_is_refused(smuggled):
    # test_globals_statements restores each (a backup, a restore); here only the refusal
    statements, _ = pgglobals.statements("CREATE ROLE smug_new;\n" + smuggled)
    with pytest.raises(Failure) as caught:
        pgglobals.refuse_unplain(statements, "g")
    assert caught.value.status == 65


@pytest.mark.parametrize("setting, kept", [("SET standard_conforming_strings = on;", True),
                                           ("SET standard_conforming_strings = off;", False),
                                           ("SET client_encoding = 'UTF8';", True)])
def test_only_the_settings_the_plain_statements_are_read_under_are_kept(setting, kept):
    # a backslash in a kept statement's '...' is refused (refuse_unplain): read with standard strings on
    assert pgglobals.plan([setting], set())[0] == ([setting] if kept else [])


def test_a_created_roles_privilege_on_a_parameter_is_revoked_before_its_drop(roles, server):
    make, _ = roles
    made = make()
    made.create_missing(GLOBALS + ["GRANT SET ON PARAMETER \"app.mode\" TO newbie;"], "g.sql", True)
    assert made.created == ["newbie"] and made.granted == [("app.mode", "newbie")]
    made.drop_created()
    sql = server.calls[-1][0]
    assert sql.index('REVOKE ALL ON PARAMETER "app.mode" FROM "newbie"') < sql.index('DROP ROLE IF EXISTS "newbie"')


def test_a_revoke_s_dollar_quote_is_none_its_names_hold():
    done = pgroles._revoke(("app.mode", "a$encpipe$b"))
    tag = done[len("DO "):done.index("BEGIN")]
    assert done.count(tag) == 2 and done.endswith(tag + ";"), done


@pytest.mark.parametrize("has, dropped, attempts", [("0", None, 1), ("1", "0", 1), ("1", "1", 2)])
def test_a_scratch_database_is_dropped_again_only_once_its_subscriptions_are(monkeypatch, has, dropped, attempts):
    asked, tried = [], []
    monkeypatch.setattr(pgcommit, "value", lambda db, sql: asked.append(db) or (has if len(asked) == 1 else dropped))

    def attempt():
        tried.append(1)
        if len(tried) == 1:
            raise PgError("ERROR:  database is being used by logical replication subscription")
    if attempts == 1:
        with pytest.raises(PgError):
            pgcommit.drop_scratch("postgres", "scratch", attempt)
    else:
        pgcommit.drop_scratch("postgres", "scratch", attempt)
    assert len(tried) == attempts
    # the maintenance database asked first; the scratch one, if at all, with a bounded connection
    assert asked[0] == "postgres" and all("connect_timeout=" in db for db in asked[1:]), asked


def test_what_a_refused_restore_left_of_dbname():
    assert pgcommit.untouched("live", None) == "nothing was changed"
    assert pgcommit.untouched("live", True) == "database live was not touched"
    assert pgcommit.untouched("live", False) == "database live was not created"


class Run:
    """What pgrights.check reads of a pgrestore.Run: a non-superuser `u`."""
    superuser, user, db, maint, spaces, role_names = False, "u", "live", "postgres", ["pg_default"], {"u"}

    def __init__(self, role=None):
        self.o, self.roles = {"role": role, "tool": []}, pgroles.Roles("postgres", None)

    def skips(self, exists):
        return False, False


@pytest.mark.parametrize("role, exists, props, asked", [
    (None, False, {"owner": "o"}, [("o", "MEMBER")]),  # a new database's recorded owner
    ("r", True, None, [("r", "MEMBER"), ("r", "USAGE")]),  # --role: the swap grants as r
    (None, True, {"owner": "o"}, [("o", "MEMBER")]),  # no ACL recorded: granted as the restoring role
    (None, True, {"owner": "o", "acl": []}, [("o", "MEMBER"), ("o", "USAGE")]),
])
def test_the_roles_a_non_superuser_needs_are_asked(monkeypatch, role, exists, props, asked):
    seen = []
    monkeypatch.setattr(pgrights, "privilege_needs", lambda maint, db, exists, roles, *a: seen.extend(roles) or [])
    pgrights.check(Run(role), exists, props, [])
    assert [(name, mode) for name, mode, _ in seen] == asked


@pytest.mark.parametrize("props, labelled", [
    ({"name": "other", "run": "live_20240101T000000Z"}, "live_20240101T000000Z"),  # the label FILE's, the rest not
    ({"name": "live", "run": "live_20230101T000000Z"}, None),  # an older run's, unlabelled
])
def test_a_globals_file_of_another_database_or_run_is_refused(props, labelled):
    with pytest.raises(Failure) as caught:
        pgglobals.refuse_other_run(props, "live_20240101T000000Z", "g", None, labelled)
    assert caught.value.status == 65


def test_a_remote_files_globals_file_is_never_a_local_file_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.globals.sql.enc").write_bytes(b"planted")
    assert pgglobals.beside("x.globals.sql.enc", False, False) == "x.globals.sql.enc"
    with pytest.raises(Failure) as caught:
        pgglobals.beside("x.globals.sql.enc", True, False)
    assert caught.value.status == 66


def test_a_globals_file_of_more_statements_than_a_restore_plans_from_is_refused(monkeypatch):
    monkeypatch.setattr(pgglobals, "GLOBALS_MAX_STATEMENTS", 2)
    assert pgglobals.statements("SELECT 1;\nSELECT 2;\n")[0] == ["SELECT 1;", "SELECT 2;"]
    with pytest.raises(Failure) as caught:
        pgglobals.statements("SELECT 1;\nSELECT 2;\nSELECT 3;\n")
    assert caught.value.status == 65


@pytest.mark.parametrize("odd, kind", [({"connlimit": True}, "connlimit"), ({"connlimit": "5"}, "connlimit"),
                                       ({"acl": "x"}, "acl"), ({}, None)])
def test_a_property_of_another_kind_is_named(odd, kind):
    props = {"name": "live", "encoding": "UTF8", "collate": "C", "ctype": "C", **odd}
    assert pgglobals._odd_property(props) == kind


def test_a_revoke_from_a_role_gone_meanwhile_is_no_error(pg):
    # another session dropped a role the restore created: its REVOKE (run before the DROP ROLEs, in one
    # transaction with them) must not fail, or the others would not be dropped (one psql on the session's cluster)
    pg.psql("DROP ROLE IF EXISTS mut_gone;\n" + pgroles._revoke(("work_mem", "mut_gone")))
