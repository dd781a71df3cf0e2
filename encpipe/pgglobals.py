"""The roles of a backup's globals file, applied only where the target lacks them.

A globals file is `pg_dumpall --globals-only` (plus the database properties
line of encpipe.pgprops). Run as is, it would ALTER every existing role
(attributes, passwords) and fail on the first CREATE ROLE of a role that exists.
Instead it is split into statements and only these are kept:

- CREATE ROLE of a role the target does not have, and the ALTER ROLE,
  COMMENT ON ROLE and SECURITY LABEL ... ON ROLE statements of such a role;
- GRANT role TO role (memberships) where either side is a role created here;
- SET statements (session settings at the top of the file).

Everything else (tablespaces, existing roles, anything unrecognised) is left
out and reported. The kept statements run in one transaction, in restricted
psql, so a file that would ALTER an existing role never gets to.
"""

import re

from . import pgprops
from .pgcli import Failure
from .pgprops import unquote

# A globals file's SQL is read into memory (its plan needs all of it): some 200,000 roles at most.
GLOBALS_MAX_BYTES = 64 << 20


def read_sql(proc, path, db):
    """The standard output of `proc` (encpipe open of the globals file at `path`),
    no more than GLOBALS_MAX_BYTES of it read whatever the file holds: Failure (65)
    past that, before any server is reached for database `db`."""
    with proc:
        text = proc.stdout.read(GLOBALS_MAX_BYTES + 1)
        if len(text) > GLOBALS_MAX_BYTES:
            proc.kill()
    if len(text) > GLOBALS_MAX_BYTES:
        raise Failure("the globals file %s holds over %d MiB of SQL, more than a restore reads; database %s "
                      "was not touched" % (path, GLOBALS_MAX_BYTES >> 20, db), 65,
                      "if it is genuine, move it aside (the restore goes on without it) and create its roles yourself")
    return text


_IDENT = r'(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)'
_ROLE_STATEMENT = re.compile(
    r"^(?:CREATE ROLE (%s);|ALTER ROLE (%s) |COMMENT ON ROLE (%s) IS |SECURITY LABEL FOR \S+ ON ROLE (%s) IS )"
    % ((_IDENT,) * 4), re.S)
_GRANT_ROLE = re.compile(r"^GRANT (%s) TO (%s)(?: .*?)?(?: GRANTED BY (%s))?;$" % ((_IDENT,) * 3), re.S)
_CREATE_ROLE = re.compile(r"^CREATE ROLE (%s);$" % _IDENT)
_TABLESPACE = re.compile(r"^(?:CREATE|ALTER|COMMENT ON|GRANT .*? ON) TABLESPACE (%s)" % _IDENT, re.S)


def statements(text):
    """(statements, properties) of a globals file: comments and backslash lines dropped."""
    result, props, current, quote = [], None, [], None
    for line in text.splitlines(keepends=True):
        if not current and quote is None:
            stripped = line.strip()
            if not stripped or stripped.startswith("\\"):
                continue
            if stripped.startswith("--"):
                props = pgprops.parse_line(stripped) or props
                continue
        current.append(line)
        for char in line:
            if quote:
                if char == quote:
                    quote = None  # a doubled quote closes and reopens: same state after both
            elif char in "'\"":
                quote = char
        if quote is None and line.rstrip().endswith(";"):
            result.append("".join(current).strip())
            current = []
    if current:
        result.append("".join(current).strip())
    return result, props


def plan(all_statements, existing_roles):
    """(statements to run, roles created, what was left out) for a target with `existing_roles`."""
    created = []
    for statement in all_statements:
        match = _CREATE_ROLE.match(statement)
        if match and unquote(match[1]) not in existing_roles:
            created.append(unquote(match[1]))
    new = set(created)
    keep, skipped = [], []
    for statement in all_statements:
        role = _ROLE_STATEMENT.match(statement)
        grant = _GRANT_ROLE.match(statement)
        if statement.startswith("SET ") and "\n" not in statement:
            keep.append(statement)
        elif role:
            name = unquote(next(g for g in role.groups() if g))
            (keep if name in new else skipped).append(statement)
        elif grant and new & {unquote(grant[1]), unquote(grant[2])}:
            keep.append(statement)
        else:  # tablespaces among them: tablespaces() names them
            skipped.append(statement)
    return keep, created, skipped


def tablespaces(skipped):
    return sorted({unquote(m[1]) for m in map(_TABLESPACE.match, skipped) if m and m[0].startswith("CREATE")})
