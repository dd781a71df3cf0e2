"""The roles of a backup's globals file, applied only where the target lacks them.

A globals file is `pg_dumpall --globals-only` (after encpipe-backup's label, a
comment line naming the database and run, and before the database properties
line of encpipe.pgprops). Run as is, it would ALTER every existing role
(attributes, passwords) and fail on the first CREATE ROLE of a role that exists.
Instead it is split into statements and only these are kept:

- CREATE ROLE of a role the target does not have, and the ALTER ROLE,
  COMMENT ON ROLE and SECURITY LABEL ... ON ROLE statements of such a role;
- GRANT role TO role (memberships) whose member is a role created here (in a
  new role or an existing one); never one that makes a role the target has a
  member of a new role: that role would gain the new role's rights (members_left);
- GRANT ... ON PARAMETER to a role created here, granted by the parameters' owner,
  of a parameter the target knows (parameters_left names the others of such a role);
- the SET statements pg_dumpall writes at the top of the file.

Everything else (tablespaces, existing roles, anything unrecognised) is left
out and reported. The kept statements run in one transaction, in restricted
psql, so a file that would ALTER an existing role never gets to. A statement
that would be kept must also be one statement of the forms pg_dumpall writes
(plain()): one that went on with more SQL, behind a second `;`, a comment or a
quoting form psql reads otherwise than this splitter, would run whole.
"""

import os
import re

from . import childerr, pgencoding, pgprops
from .backup.label import HEAD_BYTES, after_line, found
from .backup.names import CLUSTER_DUMP
from .errors import InvalidStream
from .pgcli import Failure
from .pgprops import unquote

# The hint of a refused globals file: the restore needs no globals file when told so.
NO_GLOBALS = "restore without it with --no-globals (no roles, no recorded database properties)"
REFUSED_HINT = "give the right one with --globals FILE, or " + NO_GLOBALS

# The hint of a globals file of FILE's run that is not there: a run made without one, or one removed.
MISSING_HINT = ("a backup made with encpipe-backup --no-globals has none: restore it with --no-globals (no roles, no "
                "recorded database properties); else give the right one with --globals FILE")

# A globals file's SQL is read into memory (its plan needs all of it): some 200,000 roles at most,
# in at most GLOBALS_MAX_STATEMENTS statements (each a string, some 60 bytes beyond its text: 64 MiB
# of one-byte statements took 2.7 GB); five a role.
GLOBALS_MAX_BYTES = 64 << 20
GLOBALS_MAX_STATEMENTS = 1_000_000
# A line as str.splitlines cuts them, its end kept: read one at a time, not all at once.
_LINE = re.compile("[^\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]*(?:\r\n|[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029])?")


def read_sql(proc, path):
    """The standard output of `proc` (encpipe open of the globals file at `path`),
    no more than GLOBALS_MAX_BYTES of it read whatever the file holds: Failure (65)
    past that, before any server is reached."""
    with proc:  # which waits for the child at its end: stopped first when the read is (SIGTERM, SIGINT)
        try:
            text = proc.stdout.read(GLOBALS_MAX_BYTES + 1)
        except BaseException:
            childerr.stop(proc)
            raise
        if len(text) > GLOBALS_MAX_BYTES:
            proc.kill()
    if len(text) > GLOBALS_MAX_BYTES:
        raise Failure("the globals file %s holds over %d MiB of SQL, more than a restore reads; nothing was "
                      "changed" % (path, GLOBALS_MAX_BYTES >> 20), 65,
                      "if it is genuine, %s, and create its roles yourself" % NO_GLOBALS)
    return text


_IDENT = r'(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)'
_ROLE_STATEMENT = re.compile(
    r"^(?:CREATE ROLE (%s);|ALTER ROLE (%s) |COMMENT ON ROLE (%s) IS |SECURITY LABEL FOR \S+ ON ROLE (%s) IS )"
    % ((_IDENT,) * 4), re.S)
# one grantee, then only the options pg_dumpall writes (15: WITH ADMIN OPTION; 16 on: WITH ADMIN OPTION,
# INHERIT FALSE, SET TRUE): before, any text, and `TO new , mallory` was kept by its first grantee
_GRANT_ROLE = re.compile(r"^GRANT (%s) TO (%s)(?: WITH [A-Z]+ (?:OPTION|TRUE|FALSE)(?:, [A-Z]+ (?:OPTION|TRUE|FALSE))*)?"
                         r"(?: GRANTED BY (%s))?;$" % ((_IDENT,) * 3))
# unquoted, a role specification's keywords, never a role's name (pg_dumpall quotes a role so named)
_ROLE_KEYWORDS = {"all", "current_role", "current_user", "none", "public", "session_user", "user"}
_CREATE_ROLE = re.compile(r"^CREATE ROLE (%s);$" % _IDENT)
# pg_dumpall's privileges on configuration parameters (PostgreSQL 15 and later); one granted by
# another role than the parameters' owner comes between SET and RESET SESSION AUTHORIZATION
_GRANT_PARAMETER = re.compile(r"^GRANT [A-Z ,]+ ON PARAMETER (%s) TO (%s)(?: WITH GRANT OPTION)?;$" % ((_IDENT,) * 2))
_GRANTOR = re.compile(r"^(SET|RESET) SESSION AUTHORIZATION\b")
_TABLESPACE = re.compile(r"^(?:CREATE|ALTER|COMMENT ON|GRANT .*? ON) TABLESPACE (%s)" % _IDENT, re.S)
# What pg_dumpall's role statements are made of: keywords and plain names (never
# followed by a quote: U&'...'), numbers, quoted names, string literals (with no
# backslash, which standard_conforming_strings would make ambiguous; E'...' when
# there is one, as pg_dumpall writes it), a few signs; then the one `;` that ends
# them. No second `;`, comment (-- or /*), dollar quote, psql variable (:name) or
# backslash outside quotes: psql reads it as this module does, one statement.
# Each text splits into tokens one way only (a token cannot be followed by what
# would extend it: one space at a time, no string right after a string), so a
# statement that does not match fails in linear time, never by backtracking.
# A space is one of PostgreSQL's (not \s, any Unicode space: psql reads U+00A0
# or U+0085 as part of a name, so `X<U+00A0>E'\'` would end its string at the
# second quote where this read an E'' string on).
_TOKEN = r"""(?:[Ee]'(?:[^'\\]|''|\\[\s\S])*'(?!')|[A-Za-z_][A-Za-z0-9_]*(?![A-Za-z0-9_$'"&])"""
_TOKEN += r"""|-?[0-9]+(?:\.[0-9]+)?(?![A-Za-z0-9_$'".])|'(?:[^'\\]|'')*'(?!')|"(?:[^"]|"")*"(?!")|[=,.()]"""
_TOKEN += r"""|[ \t\n\r\f])"""
_PLAIN = re.compile(r"(?:%s)*;" % _TOKEN)
# The settings pg_dumpall starts a globals file with (standard strings on: a
# backslash in a literal is a backslash, as _PLAIN reads it).
_SET = re.compile(r"SET (default_transaction_read_only|client_encoding|standard_conforming_strings) = "
                  r"(on|off|'[A-Za-z0-9_]+');")


def refuse_globals_file(name, file):
    """Failure (64) when FILE (as given: `file`) is a globals file by its `name` (a link's: its target's)."""
    if name.endswith(".globals.sql.enc"):
        raise Failure("%s is a globals file: restore the dump of its run, which applies it" % file, 64)


def beside(name, remote, legacy):
    """The globals file to read of FILE's run, `name` beside FILE (pgfetch.globals_name; None when
    FILE is not named as a run's dump, or --globals or --no-globals was given): `name`, when a local
    FILE's is there; None when none is needed (FILE not named as a run's, or a file of the previous
    tool, `legacy`, which no run made). Else (not there, or a `remote` FILE's not on the remote)
    Failure (66) before any server is reached: a writer of the directory who removed it made the
    database restored without its roles, owner and privileges (PUBLIC could connect)."""
    if name and not remote and os.path.lexists(name):
        return name
    if name and not legacy:
        raise Failure("the globals file of FILE's run is missing: %s; nothing was changed" % name, 66,
                      MISSING_HINT)
    return None


def statements(text, path="the globals file"):
    """(statements, properties) of a globals file: comments and backslash lines dropped.
    Failure (65) past GLOBALS_MAX_STATEMENTS statements."""
    result, props, current, quote = [], None, [], None
    for line in map(lambda match: match[0], _LINE.finditer(text)):
        if not line:  # the end
            break
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
            if len(result) > GLOBALS_MAX_STATEMENTS:
                raise Failure("%s holds more than %d statements, more than a restore plans from; nothing was "
                              "changed" % (path, GLOBALS_MAX_STATEMENTS), 65, "if it is genuine, %s, and create "
                              "its roles yourself" % NO_GLOBALS)
    if current:
        result.append("".join(current).strip())
    return result, props


def checked(text, path, run, say):
    """(the statements to run, the properties) of a globals file's decrypted `text`, once
    refuse_other_run (with `run`, `say`) and refuse_unplain passed (--no-globals reads none)."""
    try:
        decoded, encoding = pgencoding.globals_text(text)
    except UnicodeDecodeError as e:
        raise Failure("the globals file %s is not text of the encoding it says (%s); nothing was changed"
                      % (path, e.reason), 65, REFUSED_HINT) from None
    except pgencoding.Unconverted as e:
        raise Failure("the globals file %s is in %s, which encpipe-restore does not convert, and holds text that is "
                      "not ASCII; nothing was changed" % (path, e), 65,
                      "create its roles from it with psql (encpipe open FILE | psql, which converts it), then "
                      "restore with --no-globals and set the database's owner, privileges, settings and comment "
                      "as the file records them") from None
    if "\0" in decoded:  # psql reads a line only up to a NUL: the rest of it, its end too, never reaches its lexer
        raise Failure("the globals file %s holds a NUL byte, which pg_dumpall never writes; nothing was changed"
                      % path, 65, REFUSED_HINT)
    all_statements, props = statements(decoded, "the globals file %s" % path)
    encodings = [s for s in all_statements if (m := _SET.fullmatch(s)) and m[1] == "client_encoding"]
    if len(encodings) > 1:  # psql would read what follows the second in another encoding than this module did
        raise Failure("the globals file %s sets client_encoding more than once (pg_dumpall sets it once); nothing "
                      "was changed" % path, 65, REFUSED_HINT)
    if encoding:  # sent as UTF-8, which the server converts from
        all_statements = [pgencoding.SET_UTF8 if s in encodings else s for s in all_statements]
    if props:
        odd = _odd_property(props)
        if odd:
            raise Failure("the globals file %s records a database property of a kind encpipe-backup never writes "
                          "(%s); nothing was changed" % (path, odd), 65, REFUSED_HINT)
        props = pgencoding.readable(props, props.get("encoding"))
    refuse_other_run(props, run, path, say, labelled_run(text, path))
    refuse_unplain(all_statements, path)
    return all_statements, props


def _odd_property(props):
    """The first property of `props` whose value is of another kind than pgprops._QUERY
    gives it (used as it is, it was an internal error, 70), or None."""
    def text(*keys, within=props, optional=True):
        return next((k for k in keys if not (isinstance(within.get(k), str) or optional and within.get(k) is None)),
                    None)

    row, settings, acl = props.get("row") or {}, props.get("settings") or [], props.get("acl") or []
    if not isinstance(row, dict):
        return "row"
    odd = text("name", "encoding", "collate", "ctype", optional=False) or text("owner", "comment", "tablespace", "run")
    odd = odd or text("datlocprovider", "datlocale", "daticulocale", "daticurules", within=row)
    if odd or any(row.get(k) not in (None, True, False) for k in ("datistemplate", "datallowconn")):
        return odd or "row"
    if not (isinstance(acl, list) and all(isinstance(item, str) for item in acl)):
        return "acl"
    if type(props.get("connlimit", -1)) is not int:
        return "connlimit"
    if not (isinstance(settings, list) and all(
            isinstance(s, dict) and text("role", within=s) is None and isinstance(s.get("config"), list)
            and all(isinstance(c, str) for c in s["config"]) for s in settings)):
        return "settings"
    return None


def role_name(token):
    """The role an identifier `token` of a role statement names, as the server reads it:
    a quoted one as it is, an unquoted one in lower case; None for an unquoted keyword
    that names no role there (ALL, CURRENT_USER, PUBLIC...), which pg_dumpall quotes."""
    if token.startswith('"'):
        return unquote(token)
    name = token.lower()
    return None if name in _ROLE_KEYWORDS else name


def plan(all_statements, existing_roles, parameters=None):
    """(statements to run, roles created, what was left out) for a target with `existing_roles`.
    A privilege on a parameter is kept when its grantee is a role created here, it was granted
    by the parameters' owner (not by another role, under SET SESSION AUTHORIZATION) and the
    target knows the parameter: one of `parameters` (the server's, when given) or a custom
    one (its name holds a dot), as GRANT ... ON PARAMETER requires."""
    created = []
    for statement in all_statements:
        match = _CREATE_ROLE.match(statement)
        name = match and role_name(match[1])
        if name and name not in existing_roles:
            created.append(name)
    new = set(created)
    keep, skipped, grantor = [], [], None
    for statement in all_statements:
        switch = _GRANTOR.match(statement)
        if switch:
            grantor = switch[1] == "SET" or None
        parameter = _GRANT_PARAMETER.match(statement)
        if parameter:
            name = unquote(parameter[1])
            known = parameters is None or name in parameters or "." in name
            (keep if role_name(parameter[2]) in new and not grantor and known else skipped).append(statement)
            continue
        role = _ROLE_STATEMENT.match(statement)
        grant = _GRANT_ROLE.match(statement)
        setting = _SET.fullmatch(statement)
        if setting and (setting[1] != "standard_conforming_strings" or setting[2] == "on"):
            keep.append(statement)
        elif role:
            name = role_name(next(g for g in role.groups() if g))
            (keep if name in new else skipped).append(statement)
        elif grant and role_name(grant[2]) in new:
            keep.append(statement)
        else:  # tablespaces among them: tablespaces() names them
            skipped.append(statement)
    return keep, created, skipped


def labelled_run(text, path):
    """The run (<db>_<stamp>) the label of a globals file's SQL `text` names; None
    when it has none (an older encpipe-backup made it). A malformed one, or one not
    followed by pg_dumpall's output (a labelled dump), is Failure (65)."""
    try:
        said = found(text[:HEAD_BYTES])
    except InvalidStream as e:
        raise Failure("the globals file %s: %s; nothing was changed" % (path, e), 65,
                      REFUSED_HINT) from None
    if said.source is not None and not after_line(text[:HEAD_BYTES]).startswith(CLUSTER_DUMP):
        raise Failure("the globals file %s does not hold pg_dumpall's dump of a cluster (a database's dump under a "
                      "globals file's name?); nothing was changed" % path, 65, REFUSED_HINT)
    return os.fsdecode(said.db) + "_" + said.at.decode("ascii") if said.source == "label" else None


def refuse_other_run(props, run, path, say, labelled=None):
    """For a globals file found beside FILE, whose run (<db>_<stamp>) is `run`:
    Failure (65) when its label (`labelled`, the run it names) or its properties
    are another database's (a copy planted there gave the dump that database's
    owner and ACL), or another run's (an older globals file of the same database,
    or another cluster's, under this run's name: roles dropped since would come
    back). One that names no run (an older encpipe-backup made it) is taken, with
    a warning."""
    if not run:
        return
    database = run.rsplit("_", 1)[0]
    of = labelled.rsplit("_", 1)[0] if labelled is not None else props.get("name") if props else database
    if of != database:  # another database's first: the label's, else the properties'
        raise Failure("the globals file %s holds the properties of database %s, not of %s (FILE's); nothing was "
                      "changed" % (path, of, database), 65,
                      "a copy of another database's globals file? " + REFUSED_HINT)
    if labelled is not None and labelled != run:
        raise Failure("the globals file %s was made by run %s, not by FILE's (%s); nothing was changed"
                      % (path, labelled, run), 65,
                      "an older globals file put under this run's name? " + REFUSED_HINT)
    if props and props.get("name") != database:
        raise Failure("the globals file %s holds the properties of database %s, not of %s (FILE's); nothing was "
                      "changed" % (path, props.get("name"), database), 65,
                      "a copy of another database's globals file? " + REFUSED_HINT)
    if not props or props.get("run") is None:
        if labelled is None:
            say("the globals file %s names no backup run (an older encpipe-backup made it): nothing ties it to FILE's"
                % path, "warning")
    elif props["run"] != run:
        raise Failure("the globals file %s was made by run %s, not by FILE's (%s); nothing was changed"
                      % (path, props["run"], run), 65,
                      "an older globals file put under this run's name? " + REFUSED_HINT)


def refuse_unplain(all_statements, path):
    """Failure (65) when a statement that plan() could keep (about a role, a
    membership, a SET) is not one statement as pg_dumpall writes them (_PLAIN): it
    would run whole, whatever follows its first words. Named by those words (up to
    its role's name), never a password hash or a comment's text."""
    for statement in all_statements:
        match = _ROLE_STATEMENT.match(statement) or re.match(r"(?:GRANT|SET) ", statement)
        if match and not _PLAIN.fullmatch(statement):
            raise Failure("the globals file %s holds a statement that is not one of pg_dumpall's: %s ... (more SQL "
                          "behind it, a comment or a quoting pg_dumpall never writes); nothing was changed"
                          % (path, match[0].rstrip()), 65, REFUSED_HINT)


def members_left(skipped, created):
    """Each membership left out of `skipped` (plan's) that makes a role the target had a member
    of one of `created`, as "MEMBER in GROUP": before, it was run, and the target's role gained
    the rights of a role the globals file made (pg_read_server_files, say)."""
    matches = (m for m in map(_GRANT_ROLE.match, skipped) if m)
    return ["%s in %s" % (role_name(m[2]) or m[2], role_name(m[1])) for m in matches if role_name(m[1]) in set(created)]


def parameter_grants(statements):
    """(parameter, grantee) of each privilege on a parameter that `statements` grant."""
    matches = (m for m in map(_GRANT_PARAMETER.match, statements) if m)
    return [(unquote(m[1]), role_name(m[2])) for m in matches]


def parameters_left(skipped, created):
    """Each privilege on a parameter left out of `skipped` (plan's) whose grantee is one of
    `created`, as "ROLE on PARAMETER": granted by another role, or on a parameter the server
    does not know (one a later PostgreSQL removed)."""
    return ["%s on %s" % (role, parameter) for parameter, role in parameter_grants(skipped) if role in set(created)]


def tablespaces(skipped):
    return sorted({unquote(m[1]) for m in map(_TABLESPACE.match, skipped) if m and m[0].startswith("CREATE")})
