"""The roles of the cluster a restore writes into: read once; those the backup's
globals file has and the cluster lacks, created before the scratch database (and
dropped again when the restore fails); those a new database's properties name,
checked before anything is changed."""

from . import pgglobals, pgprops
from .pgcli import Failure
from .pgclient import PgError, ident, run_sql


class Roles:
    def __init__(self, maint, say):
        self.maint, self.say = maint, say  # say(text, kind=None): a line on stderr
        self.created = []
        self._names = None

    def names(self):
        """The cluster's roles, read once (create_missing adds those it creates)."""
        if self._names is None:
            self._names = {r[0] for r in run_sql(self.maint, "SELECT rolname FROM pg_catalog.pg_roles;")}
        return self._names

    def create_missing(self, statements, source, restrict):
        """Run what pgglobals.plan keeps of `statements` (from the globals file `source`)."""
        if not statements:
            return
        keep, created, skipped = pgglobals.plan(statements, self.names())
        spaces = pgglobals.tablespaces(skipped)
        have = {r[0] for r in run_sql(self.maint, "SELECT spcname FROM pg_catalog.pg_tablespace;")} if spaces else ()
        spaces = [name for name in spaces if name not in have]
        if spaces:
            self.say("tablespaces this server lacks are not created: %s" % ", ".join(spaces), "warning")
        if not created:
            return
        try:
            run_sql(self.maint, "\n".join(keep), single_transaction=True, restrict=restrict)
        except PgError as e:
            raise Failure("cannot create the missing roles from %s: %s; nothing was changed" % (source, e)) from None
        self.created = created
        self._names |= set(created)
        self.say("created roles: %s" % ", ".join(created))

    def check(self, db, props, statements, no_owner, no_acl):
        """Failure (1) when new database `db`, with properties `props`, needs a role that
        neither the cluster nor `statements` (the globals file's) has."""
        needed = pgprops.roles_needed(props, no_owner=no_owner, no_acl=no_acl)
        existing = self.names()
        coming = set(pgglobals.plan(statements, existing)[1]) if statements else set()
        missing = sorted(needed - existing - coming)
        lost = sorted({s["role"] for s in props.get("settings") or [] if s.get("role")} - existing - coming)
        if lost:
            self.say("settings for role(s) this server lacks are left out: %s" % ", ".join(lost), "warning")
        if missing:
            raise Failure("database %s needs role(s) this server lacks: %s; nothing was changed"
                          % (db, ", ".join(missing)), 1,
                          "restore them from the backup's globals file (--globals FILE), or create them")

    def drop_created(self):
        if not self.created:
            return
        try:
            run_sql(self.maint, "\n".join("DROP ROLE IF EXISTS %s;" % ident(r) for r in reversed(self.created)),
                    single_transaction=True)
            self.say("dropped the roles this restore had created again")
        except PgError as e:
            self.say("could not drop the roles this restore created (%s): %s" % (", ".join(self.created), e), "error")
