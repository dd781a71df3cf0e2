"""A running cluster as initdb left it, for a test that restores onto an empty
server: one cluster of the worker's, reset after each test, rather than one made,
started and stopped per test (about a second each).

A reset drops every database but postgres, template0 and template1, and every
role but the bootstrap one and the suite's; the cluster is handed out again only
when everything a test can change on a server outside its own databases reads
back exactly as it did when the cluster was new (databases and their properties,
roles, memberships, tablespaces, settings of databases and roles, comments and
labels on shared objects, replication slots, prepared transactions, ALTER SYSTEM,
other sessions, and objects in postgres and template1). Anything else, or a reset
that fails (a test stopped the server, say), and the cluster is stopped and the
next test gets a new one."""

from pgcluster import BOOTSTRAP_ROLE, PgCluster, PgClusterError

_SHARED_STATE = """
SELECT datname, pg_get_userbyid(datdba), encoding, datlocprovider, datcollate, datctype, datistemplate,
       datallowconn, datconnlimit, datacl, dattablespace FROM pg_database ORDER BY 1;
SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls,
       rolconnlimit, rolpassword, rolvaliduntil FROM pg_authid ORDER BY 1;
SELECT roleid::regrole, member::regrole, grantor::regrole, admin_option FROM pg_auth_members ORDER BY 1, 2;
SELECT spcname, pg_get_userbyid(spcowner), spcacl, spcoptions FROM pg_tablespace ORDER BY 1;
SELECT setdatabase, setrole, setconfig FROM pg_db_role_setting ORDER BY 1, 2;
SELECT classoid, objoid, description FROM pg_shdescription ORDER BY 1, 2;
SELECT provider, label FROM pg_shseclabel ORDER BY 1, 2;
SELECT slot_name FROM pg_replication_slots ORDER BY 1;
SELECT gid FROM pg_prepared_xacts ORDER BY 1;
SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf' ORDER BY 1;
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid();
"""
_OWN_OBJECTS = ("SELECT count(*) FROM pg_class WHERE oid >= 16384; SELECT count(*) FROM pg_namespace WHERE oid >= 16384;"
                "SELECT count(*) FROM pg_proc WHERE oid >= 16384; SELECT count(*) FROM pg_type WHERE oid >= 16384;")
_RESET = """
SELECT format('DROP DATABASE %%I WITH (FORCE)', datname) FROM pg_database
 WHERE datname NOT IN ('postgres', 'template0', 'template1') \\gexec
SELECT format('DROP OWNED BY %%I CASCADE', rolname) FROM pg_roles
 WHERE rolname !~ '^pg_' AND rolname NOT IN (%(kept)s) \\gexec
SELECT format('DROP ROLE %%I', rolname) FROM pg_roles WHERE rolname !~ '^pg_' AND rolname NOT IN (%(kept)s) \\gexec
"""


def _state(cluster):
    return (cluster.psql(_SHARED_STATE), cluster.psql(_OWN_OBJECTS), cluster.psql(_OWN_OBJECTS, db="template1"))


def _literal(text):
    return "'" + text.replace("'", "''") + "'"


class EmptyClusters:
    """The worker's spare empty cluster: take() one (new or reset), give() it back."""

    def __init__(self):
        self._spare = None

    def take(self):
        cluster, self._spare = self._spare, None
        if cluster is None:
            cluster = PgCluster().start()
            cluster.new_state = _state(cluster)
        return cluster

    def give(self, cluster):
        kept = ", ".join(_literal(name) for name in sorted({BOOTSTRAP_ROLE, cluster.user}))
        try:
            cluster.psql(_RESET % {"kept": kept})
            reusable = _state(cluster) == cluster.new_state
        except PgClusterError:
            reusable = False
        if reusable and self._spare is None:
            self._spare = cluster
        else:
            cluster.stop()

    def close(self):
        if self._spare is not None:
            self._spare.stop()
            self._spare = None
