"""The roles of the cluster a restore writes into: read once; those the backup's
globals file has and the cluster lacks, created before the scratch database (and
dropped again when the restore fails); those a new database's properties name,
checked before anything is changed.

Creating and dropping them are steps (pgcommit.roles): when their psql fails, the
server is asked which of the roles it has, and the restore records and says that. One
transaction creates them all or none: a server that has only some of them has another
session's, none of the restore's."""

from . import pgcommit, pgglobals, pgprops, pgsaid, sigthreads
from .pgcli import Failure
from .pgclient import PgError, ident, literal, run_sql

# The roles' statements carry their password hashes (ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...',
# or an md5 one, which logs in as the role where md5 is the method): a server logging every
# statement (log_statement = 'all', log_min_duration_statement = 0, a sample of them), or only
# a failed one's (log_min_error_statement, ERROR by default), wrote them into its log, and
# pg_stat_statements kept them, and pg_stat_activity showed them, while they ran, to a
# monitoring role (pg_read_all_stats) that may not read pg_authid. Turned off for the step's
# session when it may (a superuser's: each is a superuser's setting), each the server has; no
# row is printed.
QUIET_LOG = (
    "SELECT 1 FROM (SELECT name FROM pg_catalog.pg_settings WHERE name IN ('log_statement', "
    "'log_min_duration_statement', 'log_min_duration_sample', 'log_transaction_sample_rate', "
    "'log_min_error_statement', 'pg_stat_statements.track_utility', 'track_activities') AND EXISTS (SELECT 1 FROM "
    "pg_catalog.pg_roles WHERE rolname = CURRENT_USER AND rolsuper) OFFSET 0) AS s WHERE pg_catalog.set_config("
    "s.name, CASE s.name WHEN 'log_statement' THEN 'none' WHEN 'log_min_error_statement' THEN 'panic' "
    "WHEN 'log_transaction_sample_rate' THEN '0' WHEN 'pg_stat_statements.track_utility' THEN 'off' "
    "WHEN 'track_activities' THEN 'off' "
    "ELSE '-1' END, false) IS NULL;")


class Roles:
    def __init__(self, maint, say, create=True):
        self.maint, self.say = maint, say  # say(text, kind=None): a line on stderr
        self.create = create  # False: --no-create-roles
        self.created, self.lacking = [], []  # lacking: tablespaces the globals file has, the server not
        self.granted = []  # (parameter, role created) of the privileges on parameters given with them
        self._names = None

    def names(self):
        """The cluster's roles, read once (create_missing adds those it creates)."""
        if self._names is None:
            self._names = {r[0] for r in run_sql(self.maint, "SELECT rolname FROM pg_catalog.pg_roles;", fields=1)}
        return self._names

    def seen(self, names):
        """The cluster's roles, `names`, as the caller just read them: names() asks no psql."""
        self._names = set(names)

    def create_missing(self, statements, source, restrict):
        """Run what pgglobals.plan keeps of `statements` (from the globals file `source`)."""
        if not statements:
            return
        granted = bool(pgglobals.parameter_grants(statements))
        names = {r[0] for r in run_sql(self.maint, "SELECT name FROM pg_catalog.pg_settings;", fields=1)} \
            if granted else None  # GRANT ... ON PARAMETER refuses one the server does not know
        keep, created, skipped = pgglobals.plan(statements, self.names(), names)
        if created and not self.create:  # dropped after the globals file's run, when a newer one was restored
            self.say("roles of the globals file this server lacks are not created (--no-create-roles): %s"
                     % ", ".join(created))
            created = []
        left = pgglobals.members_left(skipped, created)
        if left:
            self.say("memberships of roles this server has are left out (each would gain the rights of a role the "
                     "restore creates): %s" % ", ".join(left), "warning")
        left = pgglobals.parameters_left(skipped, created)
        if left:
            self.say("privileges on parameters granted by another role than their owner, or on parameters this "
                     "server does not know, are left out: %s" % ", ".join(left), "warning")
        spaces = pgglobals.tablespaces(skipped)
        have = {r[0] for r in run_sql(self.maint, "SELECT spcname FROM pg_catalog.pg_tablespace;", fields=1)} if spaces else ()
        spaces = self.lacking = [name for name in spaces if name not in have]
        if spaces:
            self.say("tablespaces this server lacks are not created: %s" % ", ".join(spaces), "warning")
        if not created:
            return
        with sigthreads.held():  # recorded before a signal ends the restore: its undo drops them
            outcome = pgcommit.roles(self.maint, "\n".join([QUIET_LOG, *keep]), created, (), restrict)
            if outcome:
                error, have = outcome
                if isinstance(have, PgError):
                    raise Failure("cannot create the missing roles from %s: %s, and the server could not be asked "
                                  "whether they were (%s); see whether roles %s exist"
                                  % (source, error, have, ", ".join(created)))
                if not have >= set(created):  # one transaction makes them all or none: some only are another's
                    raise Failure("cannot create the missing roles from %s: %s; nothing was changed" % (source, error))
                self.say("psql failed (%s) once the server had created the roles" % error, "warning")
            self.created, self.granted = created, pgglobals.parameter_grants(keep)
            self._names |= set(created)
        self.say("created roles: %s" % ", ".join(created))

    def hint(self, otherwise, no_tablespaces=False, said=None):
        """A failed restore's hint: the tablespaces the server lacks, which a dump that names
        them needs, when what the client `said` (pgsaid.ClientSaid) plausibly is one missing,
        unless `no_tablespaces` (pg_restore's --no-tablespaces) did without them (before,
        `otherwise` only, the cause a warning among psql's lines; then, that hint for any
        failure at all); where to give a password, when the client said it was given none;
        else `otherwise`."""
        if said is not None and said.hint:
            return said.hint
        if said is not None and said.locks_failed():
            return pgsaid.LOCKS_HINT
        if not self.lacking or no_tablespaces or said is None or not said.tablespace_failed(self.lacking):
            return otherwise
        return ("this server lacks tablespace(s) %s, which a dump that names them needs: create them first (README: "
                "Disaster recovery), or restore a custom archive with -- --no-tablespaces" % ", ".join(self.lacking))

    def check(self, db, props, statements, no_owner, no_acl):
        """Failure (1) when new database `db`, with properties `props`, needs a role that
        neither the cluster nor `statements` (the globals file's) has; Failure (65) when its
        ACL holds an item that cannot be read (the server would refuse it at the swap)."""
        try:
            needed = pgprops.roles_needed(props, no_owner=no_owner, no_acl=no_acl)
        except ValueError as e:
            raise Failure("the properties recorded for database %s hold %s; nothing was changed" % (db, e), 65,
                          pgglobals.REFUSED_HINT) from None
        existing = self.names()
        coming = set(pgglobals.plan(statements, existing)[1]) if statements and self.create else set()
        missing = sorted(needed - existing - coming)
        lost = sorted({s["role"] for s in props.get("settings") or [] if s.get("role")} - existing - coming)
        if lost:
            self.say("settings for role(s) this server lacks are left out: %s" % ", ".join(lost), "warning")
        if missing:
            raise Failure("database %s needs role(s) this server lacks: %s; nothing was changed"
                          % (db, ", ".join(missing)), 1,
                          "create them, or restore without --no-create-roles to take them from its globals file"
                          if not self.create else
                          "restore them from the backup's globals file (--globals FILE), or create them")

    def drop_created(self):
        if not self.created:
            return
        names = list(reversed(self.created))
        outcome = pgcommit.roles(self.maint, "\n".join([*map(_revoke, self.granted),
                                                        *("DROP ROLE IF EXISTS %s;" % ident(r) for r in names)]),
                                 names, names)
        if not outcome or not outcome[1]:  # psql succeeded, or failed once the server had dropped them
            self.say("dropped the roles this restore had created again")
            return
        error, left = outcome
        if isinstance(left, PgError):
            self.say("could not drop the roles this restore created (%s): %s, and the server could not be asked "
                     "whether they are gone (%s)" % (", ".join(self.created), error, left), "error")
        else:
            self.say("could not drop the roles this restore created (%s): %s"
                     % (", ".join(r for r in self.created if r in left), error), "error")


def _revoke(grant):
    """The REVOKE of a privilege on a parameter (`grant`: parameter, role) that a role the
    restore created holds, which DROP ROLE would otherwise refuse; none when the role is gone."""
    parameter, role = grant
    body = "IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = %s) THEN REVOKE ALL ON PARAMETER %s FROM %s; " \
        "END IF;" % (literal(role), ident(parameter), ident(role))
    tag = "$encpipe$"
    while tag in body:  # a name that holds it: another tag
        tag = tag[:-1] + "_$"
    return "DO %sBEGIN %s END%s;" % (tag, body, tag)
