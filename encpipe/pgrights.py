"""What encpipe-restore needs of the role it connects as, found out before anything is created.

A superuser may do every step. Another role may not write the catalog, which the
swap does for a database's recorded privileges (its ACL: pg_database.datacl) and
settings (pg_db_role_setting), nor create the globals file's roles (pg_dumpall
writes `ALTER ROLE ... NOSUPERUSER ...`, which only a superuser may run). Nor, without
CREATEDB, create the scratch database or rename a database; nor rename DBNAME (a
restore in place) without its owner's privileges; nor give the scratch database to
the recorded owner or to --role ROLE without being a member of that role; nor create
it in a tablespace it may not CREATE in; nor, with --terminate-connections, end a session on
DBNAME it may not signal. Before, such a restore loaded the whole dump
and then failed at the swap (`permission denied for table pg_database`), its hint
asking whether DBNAME was in use (tests/test_restore_not_superuser.py)."""

from . import pgglobals, pgprops
from .pgcli import Failure
from .pgclient import literal, run_sql
from .pgcommit import untouched

HINT = 'restore as a superuser; see README, "Restoring: encpipe-restore" (which role a restore needs)'


def superuser_needs(props, no_acl, creating, owner):
    """What of the restore only a superuser may do: `props`, the properties DBNAME gets
    (None: none recorded), `no_acl` (pg_restore's -x, into a new database), `creating`
    (the roles the globals file adds), `owner` (who will own it: pgprops.final_owner).
    An ACL whose every item its owner granted is given by GRANT and REVOKE (pgprops.grant_sql)."""
    needs = []
    acl = (props or {}).get("acl") if not no_acl else None
    if acl is not None and pgprops.grant_sql("", acl, owner) is None:
        needs.append("to give it its recorded privileges (ACL), some granted by another role than its owner")
    if props and props.get("settings"):
        needs.append("to give it its recorded settings")
    if creating:
        needs.append("to create role(s) %s from the globals file" % ", ".join(creating))
    return needs


def _has(name, mode):
    """SQL: whether current_user has role `name` in `mode` (MEMBER; USAGE: its privileges),
    true when the server lacks it (Roles.check names a missing role)."""
    return ("NOT EXISTS (SELECT FROM pg_catalog.pg_roles o WHERE o.rolname = %s AND "
            "NOT pg_catalog.pg_has_role(current_user, o.oid, %s))" % (literal(name), literal(mode)))


# the sessions on a database (%s) that the swap's --terminate-connections ends (pgprops.swap_sql) and the
# connecting role may not (the server's rule): a superuser's, another role's whose rights it lacks (unless
# pg_signal_backend's), one of no role but an autovacuum worker (one whose kind it is not shown is taken
# for one, as the swap does); as "<how many of no role> <their roles' names>", last
_UNENDED = ("(SELECT count(*) FILTER (WHERE r.oid IS NULL) || ' ' || coalesce(string_agg(DISTINCT r.rolname, ', ' "
            "ORDER BY r.rolname), '') FROM pg_catalog.pg_stat_activity a LEFT JOIN pg_catalog.pg_roles r ON "
            "r.oid = a.usesysid WHERE a.datname = %s AND a.pid <> pg_catalog.pg_backend_pid() AND CASE WHEN "
            "a.usesysid IS NULL THEN a.backend_type <> 'autovacuum worker' ELSE coalesce(r.rolsuper, false) OR "
            "NOT (pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'USAGE') OR r.oid IS NOT NULL AND "
            "pg_catalog.pg_has_role(current_user, r.oid, 'USAGE')) END)")


def privilege_needs(maint, db, exists, roles, space, terminate=False):
    """What the restore needs that the connecting role lacks, asked in one psql: CREATEDB,
    the privileges of DBNAME's owner (`db`, when it `exists`), the `roles` ((name, mode,
    what it lacks without it)), CREATE on tablespace `space` (None: none of them), the
    right to end every session on DBNAME (with `terminate`, when it `exists`: before, the
    swap failed on one, once the whole dump was loaded)."""
    owns = ("coalesce(pg_catalog.pg_has_role(current_user, (SELECT datdba FROM pg_catalog.pg_database "
            "WHERE datname = %s), 'USAGE'), true)" % literal(db)) if exists else "true"
    spaced = ("NOT EXISTS (SELECT FROM pg_catalog.pg_tablespace t WHERE t.spcname = %s AND "
              "NOT pg_catalog.has_tablespace_privilege(t.oid, 'CREATE'))" % literal(space)) if space else "true"
    unended = _UNENDED % literal(db) if exists and terminate else "'0 '"
    row = run_sql(maint, "SELECT rolcreatedb, %s, %s%s, %s FROM pg_catalog.pg_roles WHERE rolname = current_user;"
                  % (owns, spaced, "".join(", " + _has(name, mode) for name, mode, _ in roles), unended),
                  fields=len(roles) + 4)[0]  # role names last, split off whole
    createdb, owned, space_ok, *held = (field == "t" for field in row[:-1])
    needs = [] if createdb else ["it lacks CREATEDB (the scratch database is created, then renamed)"]
    if not owned:
        needs.append("it does not own it (the swap renames it)")
    no_member = set()
    for (name, mode, why), ok in zip(roles, held):
        if not ok and name not in no_member:  # a role it is no member of: said once
            needs.append(why)
            no_member |= {name} if mode == "MEMBER" else set()
    if not space_ok:
        needs.append("it may not create databases in tablespace %s (its recorded one)" % space)
    roleless, names = row[-1].split(" ", 1)
    if roleless != "0" or names:
        whose = (["role(s) %s" % names] if names else []) + (["%s process(es) of no role" % roleless]
                                                               if roleless != "0" else [])
        needs.append("it may not end the sessions of %s on it (--terminate-connections: the swap ends them)"
                     % " and ".join(whose))
    return needs


def check(run, exists, props, statements):
    """Failure (1), one line naming what it lacks, when the connecting role of `run`
    (a pgrestore.Run, its state read) cannot make every step of restoring into its DBNAME,
    which `exists` or not, with properties `props` and the globals file's `statements`.
    Asks nothing of a superuser."""
    if run.superuser:
        return
    no_owner, no_acl = run.skips(exists)
    creating = pgglobals.plan(statements, run.role_names)[1] if statements and run.roles.create else []
    current = run.o.get("role") or run.user  # the scratch database's owner while the dump runs
    final = pgprops.final_owner(props, no_owner, current)
    needs = superuser_needs(props, no_acl, creating, final)
    if needs:
        raise Failure("role %s is no superuser, and restoring %s needs one: %s; %s"
                      % (run.user, run.db, ", ".join(needs), untouched(run.db, exists)), 1, HINT)
    roles = []
    if run.o.get("role"):
        roles.append((run.o["role"], "MEMBER", "it is no member of role %s (--role)" % run.o["role"]))
    if final != current:
        roles.append((final, "MEMBER", "it is no member of role %s (its %sowner)" % (final, "" if exists else "recorded ")))
    granter = final if (props or {}).get("acl") is not None and not no_acl else current
    if granter != run.user:  # the swap's GRANTs are the owner's: a member that does not inherit its rights has none
        roles.append((granter, "USAGE", "it lacks the privileges of role %s (a member that does not inherit them), "
                                         "as whom the swap grants the database's privileges" % granter))
    space = (props or {}).get("tablespace")
    space = space if space in set(run.spaces) - {"pg_default"} else None
    needs = privilege_needs(run.maint, run.db, exists, roles, space, run.o.get("terminate_connections"))
    if needs:
        raise Failure("role %s cannot restore %s%s: %s; %s" % (run.user, run.db, " in place" if exists else "",
                                                                 ", ".join(needs), untouched(run.db, exists)), 1, HINT)


def _denied(error):
    """Whether psql's `error` is the server refusing the role a privilege (its English words)."""
    text = str(error)
    return text.startswith("ERROR:") and any(words in text for words in (
        "permission denied", "must be owner", "must be member", "must be a member", "must be superuser",
        "must be a superuser"))


def swap_hint(user, db, exists, terminate):
    """hint(error), the hint of a swap whose psql failed with PgError `error`: the role's
    (`user`'s) privileges when the server refused one, else whether DBNAME (`db`, when it
    `exists`) is in use (None with `terminate`)."""
    def hint(error):
        if _denied(error):
            return "the server refused role %s a privilege the swap needs: %s" % (user, HINT)
        return None if terminate or not exists else \
            "is %s in use? close its connections, or use --terminate-connections" % db
    return hint
