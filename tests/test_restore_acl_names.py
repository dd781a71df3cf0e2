"""The roles a database's recorded ACL names, read from its aclitems as the server prints them.

The server quotes a role name that is not all letters, digits and `_` in an aclitem
(`"a/b"=c/"x=y"`), doubling a `"` in it. roles_needed split an item at its last `/`,
then at the `=` before it: a grantor holding `/` (`=Tc/"a/b"`) came out as `b"`. A
restore into a new database then refused for a role the ACL does not name (`b"`: "needs
role(s) this server lacks"), or, the grantor lacking, went on, loaded the whole dump,
and failed at the swap (the ACL's `::aclitem[]` names a role the server lacks). Now an
item is read as the server writes it (pgprops.acl_item), checked here against the
server's own reading of the same ACL (aclexplode), with the names `a/b`, `x=y`, `we"ird`,
`c,d`; one that cannot be read refuses the restore (65) before anything is changed.
"""

import pytest

from encpipe import pgglobals, pgprops
from encpipe.pgcli import Failure
from encpipe.pgclient import conninfo
from encpipe.pgroles import Roles

OWNER, GRANTOR, NAMES = "a/b", "x=y", ('we"ird', "c,d")
DB = "acl_names"


def _ident(name):
    return '"%s"' % name.replace('"', '""')


@pytest.fixture(scope="module")
def recorded(pg):
    """The properties of a database owned by `a/b`, whose ACL `x=y` granted to the others, as a backup records them."""
    roles = (OWNER, GRANTOR) + NAMES
    pg.psql("".join("DROP ROLE IF EXISTS %s; CREATE ROLE %s;" % (_ident(r), _ident(r)) for r in roles))
    pg.dropdb(DB)
    pg.psql("CREATE DATABASE %s OWNER %s; GRANT CONNECT ON DATABASE %s TO %s WITH GRANT OPTION; SET ROLE %s; "
            "GRANT CONNECT ON DATABASE %s TO %s;"
            % (DB, _ident(OWNER), DB, _ident(GRANTOR), _ident(GRANTOR), DB, ", ".join(map(_ident, NAMES))))
    env = pg.env
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        props = pgprops.read(conninfo(pg.dbname), DB)
    said = pg.psql("SELECT DISTINCT pg_get_userbyid(r) FROM pg_database, aclexplode(datacl) e, "
                   "LATERAL (VALUES (e.grantor), (e.grantee)) AS v(r) WHERE datname = '%s' AND r <> 0" % DB)
    yield props, set(said.splitlines()), roles
    pg.dropdb(DB)
    pg.psql("".join("DROP ROLE %s;" % _ident(r) for r in roles))


def test_the_roles_an_acl_names_are_the_server_s(recorded):
    props, server, roles = recorded
    assert server == set(roles)
    assert any(item.endswith('/"a/b"') for item in props["acl"]), props["acl"]  # a grantor quoted, with a `/`
    assert pgprops.roles_needed(props) == server
    assert pgprops.roles_needed(props, no_owner=True) == server  # `a/b` granted PUBLIC's: still needed
    assert pgprops.roles_needed(props, no_owner=True, no_acl=True) == set()
    assert [pgprops.acl_item(i) for i in ('=Tc/"a/b"', '"we""ird"=c/"x=y"', '"c,d"=C*c/ab_1')] == [
        (None, "Tc", "a/b"), ('we"ird', "c", "x=y"), ("c,d", "C*c", "ab_1")]


def test_a_restore_needs_the_grantor_and_nothing_else(recorded):
    props, server, _ = recorded
    said = []
    roles = Roles("unused", lambda *line: said.append(line))
    roles.seen(server | {"postgres"})
    roles.check("t", props, [], no_owner=True, no_acl=False)  # before: `b"` missing, refused
    roles.seen(server - {OWNER})
    with pytest.raises(Failure) as e:  # before: passed, and the swap failed once the dump was loaded
        roles.check("t", props, [], no_owner=True, no_acl=False)
    assert (str(e.value), e.value.status) == (
        "database t needs role(s) this server lacks: a/b; nothing was changed", 1)
    assert said == []


def test_an_acl_item_that_cannot_be_read_refuses_the_restore():
    roles = Roles("unused", None)
    roles.seen({"x", "a"})
    for item in ('"a/b=c/x', 'a"b=c/x', '=c/', 'ab', '"a"b=c/x', 'a=c/"x"y', 'a=c/x/y'):
        assert pgprops.acl_item(item) is None, item
        with pytest.raises(Failure) as e:
            roles.check("t", {"acl": ["=c/x", item]}, [], no_owner=False, no_acl=False)
        assert (str(e.value), e.value.status, e.value.hint) == (
            "the properties recorded for database t hold an ACL item that cannot be read; nothing was changed", 65,
            pgglobals.REFUSED_HINT)
        roles.check("t", {"acl": ["=c/x", item]}, [], no_owner=False, no_acl=True)  # not given: not read
