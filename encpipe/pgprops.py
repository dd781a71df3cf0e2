"""A database's own properties, which pg_dump without --create leaves out.

Owner, ACL, connection limit, encoding and locale, default tablespace, `ALTER DATABASE ... SET`,
`ALTER ROLE ... IN DATABASE ... SET` and the comment are read from the catalog
as one JSON object. encpipe-backup appends it to the run's globals file as one
SQL comment line (`-- encpipe-database-properties: {...}`). encpipe-restore
creates its scratch database with the encoding and locale (and tablespace), private while the
dump runs (the restoring role's, no privilege for anyone else, no setting), and
gives it every other property in the swap transaction, as it becomes DBNAME.
"""

import json
import re
import time

from .pgcli import Failure
from .pgclient import FIELD, SERVER_ENCODING, PgError, conninfo, ident, literal, run_sql, starts_with, value

LINE_PREFIX = "-- encpipe-database-properties: "

_QUERY = """
SELECT json_build_object(
  'name', d.datname, 'owner', pg_get_userbyid(d.datdba), 'encoding', pg_encoding_to_char(d.encoding),
  'collate', d.datcollate, 'ctype', d.datctype, 'row', to_jsonb(d) - 'datacl',
  'connlimit', d.datconnlimit, 'acl', d.datacl::text[], 'comment', shobj_description(d.oid, 'pg_database'),
  'tablespace', (SELECT t.spcname FROM pg_tablespace t WHERE t.oid = d.dattablespace),
  'settings', (SELECT coalesce(json_agg(json_build_object(
                 'role', CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END,
                 'config', s.setconfig) ORDER BY s.setrole), '[]')
               FROM pg_db_role_setting s WHERE s.setdatabase = d.oid))
FROM pg_database d WHERE d.datname = %s
"""


def read(maintenance_db, name, setup=""):
    """The properties of database `name`, or None when it does not exist."""
    text = value(maintenance_db, setup + _QUERY % literal(name))
    return json.loads(text) if text else None


def state(maintenance_db, name):
    """(whether database `name` exists, how many sessions it has, how many prepared
    transactions, enabled subscriptions and logical replication slots ((prepared, subscriptions,
    slots)), whether the connecting
    role is a superuser, its name, the properties of `name` as read() gives them, the names of
    the cluster's roles, the names of its tablespaces): one psql, all that a restore asks
    before it begins (before, its properties and the roles were two psql more). A session is
    any process of the server that keeps the swap's rename from running: a client's, a
    walsender, a subscription's apply worker, an extension's worker (before, only a client's
    counted, and the swap failed once the whole dump was restored); not an autovacuum worker,
    which the rename ends itself, nor a parallel worker (its leader counts). A role that has
    not another's rights (nor pg_read_all_stats) is not shown its sessions' kind: one of a
    role counts (before, none did, and such a role's restore failed at the swap), one of no
    role is taken for an autovacuum worker."""
    # each row tagged, a name last: split in two, then the state's rest (run_sql's `fields`)
    rows = run_sql(maintenance_db, (
        "SELECT 'state', count(*), (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE datname = %s AND "
        "(backend_type NOT IN ('autovacuum worker', 'parallel worker') OR backend_type IS NULL AND usesysid IS NOT "
        "NULL)), (SELECT count(*) FROM "
        "pg_catalog.pg_prepared_xacts WHERE database = %s), (SELECT count(*) FROM pg_catalog.pg_subscription WHERE "
        "subenabled AND subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = %s)), (SELECT count(*) "
        "FROM pg_catalog.pg_replication_slots WHERE database = %s), (SELECT rolsuper "
        "FROM pg_catalog.pg_roles WHERE rolname = current_user), current_user FROM pg_catalog.pg_database WHERE "
        "datname = %s;\nSELECT 'properties', q.p FROM (%s) AS q(p);\n"
        "SELECT 'role', rolname FROM pg_catalog.pg_roles;\nSELECT 'space', spcname FROM pg_catalog.pg_tablespace;")
        % ((literal(name),) * 5 + (_QUERY % literal(name),)), fields=2)
    count, busy, prepared, subscriptions, slots, superuser, user = rows[0][1].split(FIELD, 6)
    text = next((row[1] for row in rows[1:] if row[0] == "properties"), None)
    roles, spaces = ({row[1] for row in rows[1:] if row[0] == tag} for tag in ("role", "space"))
    return (count != "0", int(busy), (int(prepared), int(subscriptions), int(slots)), superuser == "t", user,
            json.loads(text) if text else None, roles, spaces)


def free(maintenance_db, name, terminate=False, tries=10):
    """state() once database `name` has no session (or any, with `terminate`: the swap ends
    them), prepared transaction, enabled subscription or logical replication slot (it stays
    with the database the swap renames, and a DROP of that copy, --drop-old's, drops it
    unsaid: the consumer's place in the stream is lost); else Failure (75). Sessions are
    asked after up to `tries` times 0.3 s apart (one may be ending); the others at once:
    none of them goes by itself. No session holds a prepared transaction, and a
    subscription's worker, ended, comes back at once: --terminate-connections ends neither. The restore's first psql: one that cannot
    connect (no password given, say) is Failure, nothing changed."""
    for _ in range(tries):
        try:
            now = state(maintenance_db, name)
        except PgError as e:
            raise Failure("%s; nothing was changed" % e, e.status) from None  # its hint: the restore's, as any
        (prepared, subscriptions, slots), busy = now[2], now[1]
        if prepared or subscriptions or slots:
            break
        if not busy or terminate:
            return now
        time.sleep(0.3)
    if prepared:
        raise Failure("database %s has %d prepared transaction(s), which no session holds; nothing was changed"
                      % (name, prepared), 75, "commit or roll them back first (COMMIT PREPARED or ROLLBACK PREPARED, "
                      "as pg_prepared_xacts lists them)")
    if subscriptions:
        raise Failure("database %s has %d enabled subscription(s), whose workers come back once ended; nothing was "
                      "changed" % (name, subscriptions), 75, "disable them first (ALTER SUBSCRIPTION ... DISABLE, in "
                      "%s)" % name)
    if slots:
        raise Failure("database %s has %d logical replication slot(s), which would stay with the database the "
                      "restore replaces; nothing was changed" % (name, slots), 75, "drop them first "
                      "(pg_drop_replication_slot, as pg_replication_slots lists them) and make them again after the "
                      "restore, or restore into another name")
    raise Failure("database %s has %d active connection(s); nothing was changed" % (name, busy), 75,
                  "close them, or use --terminate-connections")


def unapplied(db, owner, no_globals, live=None, recorded=None):
    """The warnings of a restore into `db` whose recorded properties are not applied: into a
    new database without them, which `owner` (the restoring role) will own: --no-globals
    (`no_globals`), or no globals file; or in place, the live database's (`live`) kept where
    the globals file records others (`recorded`): on a new server, its `postgres` database
    (before, it kept the new server's owner and privileges, PUBLIC's CONNECT too, unsaid)."""
    if live is not None:
        live, recorded = _comparable(live), recorded and _comparable(recorded)
        kept = [what for what, keys in _KEPT if recorded and all(k in recorded for k in keys)
                and [_same(k, live.get(k)) for k in keys] != [_same(k, recorded[k]) for k in keys]]
        return ["%s exists: restored in place, it keeps its own %s; the globals file records others, not applied "
                "(rename %s first to have them)" % (db, ", ".join(kept), db)] if kept else []
    if recorded is not None:
        return []
    if not no_globals:
        return ["no database properties (no globals file): %s will belong to the restoring role, with default "
                "privileges" % db]
    return ["--no-globals: the database properties a globals file records are not applied (owner, privileges, "
            "encoding and locale, connection limit, settings, comment): %s will belong to %s, with default "
            "privileges and template0's encoding and locale" % (db, owner)]


# what an in-place restore keeps of the live database, by the keys read() gives
_KEPT = (("owner", ("owner",)), ("privileges", ("acl",)), ("connection limit", ("connlimit",)),
         ("encoding and locale", ("encoding", "collate", "ctype")), ("locale provider", ("provider",)),
         ("tablespace", ("tablespace",)), ("settings", ("settings",)), ("comment", ("comment",)))


def _comparable(props):
    """`props` as unapplied compares them: its locale provider (ICU's or the builtin one, with
    its locale and rules, as each server version's columns hold them; none recorded by a row
    without it) as "provider", and no ACL (NULL) as the default one it stands for,
    acldefault('d', owner): a role that is no superuser gives a new database that ACL by
    grants, and a later restore in place took it for other privileges."""
    props, row = dict(props), props.get("row")
    if isinstance(row, dict) and "datlocprovider" in row:
        props["provider"] = [row["datlocprovider"], row.get("datlocale") or row.get("daticulocale"),
                             row.get("daticurules")]
    if "acl" in props and props["acl"] is None and props.get("owner"):
        owner = _acl_name(props["owner"])
        props["acl"] = ["=Tc/" + owner, "%s=CTc/%s" % (owner, owner)]
    return props


def _acl_name(name):
    """A role's name as an aclitem's text writes it: quoted unless ASCII letters, digits, _."""
    return name if name and all(c.isascii() and (c.isalnum() or c == "_") for c in name) else \
        '"%s"' % name.replace('"', '""')


def _same(key, value):
    """`value` of property `key`, in an order that does not depend on the server (its oids)."""
    if key == "acl" and value is not None:
        return sorted(value)
    if key == "settings":
        return sorted((s.get("role") or "", sorted(s.get("config") or [])) for s in value or [])
    return value


def comment_line(db, run=None):
    """The comment line for `db`'s globals file (read connected to `db` itself), with
    the backup run it belongs to (`run`, <db>_<stamp>, its files' names less their
    kind): a restore takes a globals file beside FILE only when it is FILE's run's.
    PgError when the properties cannot be read."""
    try:
        props = read(conninfo(db), db, SERVER_ENCODING)
    except PgError as e:
        raise PgError("cannot read the properties of %s: %s" % (db, e)) from None
    if props is not None and run:
        props["run"] = run
    return LINE_PREFIX + json.dumps(props, ensure_ascii=True, sort_keys=True)


def parse_line(line):
    """The properties from a globals file's comment line, or None."""
    if not line.startswith(LINE_PREFIX):
        return None
    try:
        props = json.loads(line[len(LINE_PREFIX):])
    except (ValueError, RecursionError):  # nested deeper than json reads (`[` repeated): no properties either
        return None
    return props if isinstance(props, dict) else None


def roles_needed(props, no_owner=False, no_acl=False):
    """Role names the owner and the ACL refer to (its items' grantees and grantors, as
    acl_item reads them): without them access would change, and the server refuses the
    ACL. ValueError when an item cannot be read (before, an item was cut at its last `/`
    and the `=` before it: a grantor named `a/b` came out as `b"`)."""
    roles = set()
    if props.get("owner") and not no_owner:
        roles.add(props["owner"])
    for item in (props.get("acl") or []) if not no_acl else []:
        read = acl_item(item)
        if read is None:
            raise ValueError("an ACL item that cannot be read")
        roles.update(r for r in (read[0], read[2]) if r is not None)
    return roles


def unquote(name):
    """An identifier as PostgreSQL prints it (quoted when it must be), as its name."""
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def create_sql(name, props, spaces=()):
    """CREATE DATABASE for the scratch database: template0, the properties' encoding
    and locale, their tablespace when it is one of `spaces` (the server's, else the
    server's default: before, always; a database kept on a disk of its own came back
    in pg_default's), and no connections at all until `private_sql` ran."""
    sql = "CREATE DATABASE %s TEMPLATE template0 ALLOW_CONNECTIONS false" % ident(name)
    if props:
        sql += " ENCODING %s LC_COLLATE %s LC_CTYPE %s" % (
            literal(props["encoding"]), literal(props["collate"]), literal(props["ctype"]))
        if props.get("tablespace") in set(spaces) - {"pg_default"}:
            sql += " TABLESPACE %s" % ident(props["tablespace"])
        sql += _provider(props.get("row") or {})
    return sql + ";"


def _provider(row):
    """The locale provider clause of a pg_database `row` as each server version writes it:
    ICU's locale (daticulocale, 15 and 16; datlocale from 17 on) and rules (16 on), 17's
    builtin provider; none for libc. Before, only 15's ICU columns were read: a database of a
    17 server came back as a libc one, and one with ICU rules without them."""
    locale = row.get("datlocale") or row.get("daticulocale")
    if row.get("datlocprovider") == "i" and locale:
        rules = row.get("daticurules")
        return " LOCALE_PROVIDER icu ICU_LOCALE %s%s" % (literal(locale), " ICU_RULES %s" % literal(rules)
                                                          if rules else "")
    if row.get("datlocprovider") == "b" and locale:
        return " LOCALE_PROVIDER builtin BUILTIN_LOCALE %s" % literal(locale)
    return ""


def undo_sql(name):
    """Drop the scratch database `name`: first end the session whose CREATE DATABASE of it the
    server may still be running (its psql was stopped with the run; the server would finish
    the CREATE after this DROP, and the database would stay), waiting for it to end."""
    create = starts_with("CREATE DATABASE %s " % ident(name))
    return ("SELECT count(pg_catalog.pg_terminate_backend(pid, 10000)) FROM pg_catalog.pg_stat_activity "
            "WHERE query LIKE %s AND pid <> pg_catalog.pg_backend_pid();\n"
            "DROP DATABASE IF EXISTS %s WITH (FORCE);" % (create, ident(name)))


def private_sql(name, props, no_owner=False, owner=None):
    """One transaction, run by the connecting role, which created the database: no privilege
    for PUBLIC (nor anyone: a new database has no other grant), `owner` (--role) its owner
    if given, then connections allowed. While the dump runs only that owner and superusers
    may connect; a role that owned the live database, or could connect to it, could put
    objects in the way of the dump's statements (which run as a superuser) or hold the
    database. The recorded owner is given and taken back at once: a connecting role that may
    not give it fails here, before the dump, not at the swap."""
    sql = ["REVOKE ALL ON DATABASE %s FROM PUBLIC;" % ident(name)]
    recorded = (props or {}).get("owner")
    if recorded and not no_owner:
        sql += ["ALTER DATABASE %s OWNER TO %s;" % (ident(name), ident(recorded)),
                "ALTER DATABASE %s OWNER TO CURRENT_USER;" % ident(name)]
    if owner:
        sql.append("ALTER DATABASE %s OWNER TO %s;" % (ident(name), ident(owner)))
    return "\n".join(sql + ["ALTER DATABASE %s ALLOW_CONNECTIONS true;" % ident(name)])


def finish_sql(name, props, no_owner=False, no_acl=False, superuser=True, owner=None):
    """For the swap transaction: IS_TEMPLATE and ALLOW_CONNECTIONS as recorded (while the
    restoring role still owns it; before, a live database that no one could connect to came
    back open to every role granted CONNECT), the recorded owner (else the restoring role,
    `owner`, stays it), the recorded ACL (else the default one: NULL, which only a
    `superuser` may write in the catalog; else PUBLIC's CONNECT and TEMPORARY granted
    again, the same rights; a recorded one that grant_sql can give, given so, by the
    owner), connection limit, settings and comment (only a `superuser` may write them:
    pgrights refuses a restore that needs them)."""
    props = props or {}
    acl = props.get("acl") if not no_acl else None
    row = props.get("row") or {}
    sql = []
    if row.get("datistemplate") is True:
        sql.append("ALTER DATABASE %s IS_TEMPLATE true;" % ident(name))
    if row.get("datallowconn") is False:
        sql.append("ALTER DATABASE %s ALLOW_CONNECTIONS false;" % ident(name))
    if acl is None and not superuser:  # while the connecting role (or --role) still owns it
        sql.append("GRANT CONNECT, TEMPORARY ON DATABASE %s TO PUBLIC;" % ident(name))
    if props.get("owner") and not no_owner:
        sql.append("ALTER DATABASE %s OWNER TO %s;" % (ident(name), ident(props["owner"])))
    grants = grant_sql(name, acl, final_owner(props, no_owner, owner)) if acl is not None and not superuser else None
    if grants is not None:  # granted by the database's owner by then
        sql += grants
    elif acl is not None or superuser:  # (another role's refused by the server: pgrights said so before)
        sql += _dependencies_sql(name, acl, final_owner(props, no_owner, owner))
        sql.append("UPDATE pg_catalog.pg_database SET datacl = %s WHERE datname = %s;" % (
            "NULL" if acl is None else literal(_array(acl)) + "::aclitem[]", literal(name)))
    if props.get("connlimit", -1) != -1:
        sql.append("ALTER DATABASE %s CONNECTION LIMIT %d;" % (ident(name), int(props["connlimit"])))
    for setting in props.get("settings") or []:  # a role the server lacks: its setting is left out
        role = "0"
        if setting.get("role"):
            role = "(SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s)" % literal(setting["role"])
        sql.append("INSERT INTO pg_catalog.pg_db_role_setting SELECT d.oid, %s, %s::text[] FROM "
                   "pg_catalog.pg_database d WHERE d.datname = %s AND %s IS NOT NULL;"
                   % (role, literal(_array(setting["config"])), literal(name), role))
    if props.get("comment") is not None:
        sql.append("COMMENT ON DATABASE %s IS %s;" % (ident(name), literal(props["comment"])))
    return "\n".join(sql)


def _dependencies_sql(name, acl, owner):
    """A GRANT to each role the ACL `acl` names but `owner`, before the catalog is written: the
    server records (pg_shdepend) that the database's privileges name them, as the recorded
    ACL's own GRANTs would have; its items then replace the granted ones. Before, the ACL was
    written in the catalog alone: DROP ROLE of a grantee succeeded, its oid left in the ACL, and
    DROP OWNED BY, REASSIGN OWNED passed it by."""
    roles = sorted({role for item in acl or [] for role in (acl_item(item) or ())[0::2]} - {None, owner})
    return ["GRANT CONNECT ON DATABASE %s TO %s;" % (ident(name), ident(role)) for role in roles]


def final_owner(props, no_owner, owner):
    """Who owns the restored database: the recorded owner (`props`'), unless `no_owner`
    or none, else the restoring role, `owner`."""
    return props["owner"] if (props or {}).get("owner") and not no_owner else owner


# an aclitem as the server prints it (acl.c's putid): grantee (empty: PUBLIC), privileges, grantor; a
# name quoted, its `"` doubled, unless it is all letters, digits and `_`
_NAME = r'"(?:[^"]|"")+"|[^"=/]+'
_ACLITEM = re.compile(r'(%s|)=([A-Za-z*]*)/(%s)' % (_NAME, _NAME))


def acl_item(text):
    """(grantee, privileges, grantor) of an aclitem as the server prints it (`"a/b"=c*/"x=y"`),
    its names unquoted; grantee None for PUBLIC. None when it cannot be read."""
    match = _ACLITEM.fullmatch(text)
    return (unquote(match[1]) if match[1] else None, match[2], unquote(match[3])) if match else None


_PRIVILEGES = {"C": "CREATE", "T": "TEMPORARY", "c": "CONNECT"}


def grant_sql(name, acl, owner):
    """The GRANT and REVOKE statements that give database `name`, owned by `owner` and
    holding the owner's rights only (as the scratch database does, PUBLIC's revoked), the
    ACL `acl` (aclitems as text): what a role that is no superuser can do instead of
    writing the catalog. None when they cannot: an item granted by another role than
    `owner` (its grantor would be `owner`), the owner's own grant options, or an item
    that cannot be read."""
    items = [acl_item(item) for item in acl]
    if not all(items) or any(by != owner or set(rights) - set(_PRIVILEGES) - {"*"} for _, rights, by in items):
        return None
    own = [rights for grantee, rights, _ in items if grantee == owner]
    if len(own) > 1 or "*" in "".join(own):
        return None
    sql = []
    lacking = [_PRIVILEGES[p] for p in "CTc" if p not in "".join(own)]
    if lacking:
        sql.append("REVOKE %s ON DATABASE %s FROM %s;" % (", ".join(lacking), ident(name), ident(owner)))
    for grantee, rights, _ in items:
        if grantee == owner:
            continue
        to = ident(grantee) if grantee is not None else "PUBLIC"
        for option, suffix in ((False, ""), (True, " WITH GRANT OPTION")):
            these = [_PRIVILEGES[p] for i, p in enumerate(rights)
                     if p != "*" and (rights[i + 1:i + 2] == "*") == option]
            if these:
                sql.append("GRANT %s ON DATABASE %s TO %s%s;" % (", ".join(these), ident(name), to, suffix))
    return sql


def swap_sql(temp, db, old, terminate=False):
    """The swap's renames: `db` (when `old` names its copy, after its sessions ended if
    `terminate`: not an autovacuum worker, which the rename ends itself, and which a role that
    is no superuser may not end, nor tell from another process of no role) to `old`, then the
    scratch database `temp` to `db`. The copy is no template
    (the restored database is, when `db` was: finish_sql): a template cannot be dropped, and
    --drop-old, --drop-pre-restore-older-than failed on it."""
    sql = []
    if old is not None:
        if terminate:
            sql.append("SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_catalog.pg_stat_activity "
                       "WHERE datname = %s AND pid <> pg_backend_pid() AND (usesysid IS NOT NULL OR "
                       "backend_type <> 'autovacuum worker');" % literal(db))
        sql.append("ALTER DATABASE %s RENAME TO %s;" % (ident(db), ident(old)))
        sql.append("ALTER DATABASE %s IS_TEMPLATE false;" % ident(old))
    return "\n".join(sql + ["ALTER DATABASE %s RENAME TO %s;" % (ident(temp), ident(db))])


def _array(items):
    """A text[] literal."""
    return "{" + ",".join('"%s"' % i.replace("\\", "\\\\").replace('"', '\\"') for i in items) + "}"
