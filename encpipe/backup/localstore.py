"""A location that is a local directory (storage.open_location gives one for a
path): the interface storage.py describes, every step relative to the directory's
descriptor, each upload a file of its own written out as it goes."""

import errno
import io
import os
import stat

from .. import dirlock, safefile, writers
from ..bounded import AsListed
from ..errors import Changed, IOFailure, UnsafeDirectory, reason, unreadable
from ..stdio import open_if_regular
from ..textform import shown_name
from .records import Item
from .removal import put_back_held, remove_listed

CHUNK = 1 << 20
_PATH_ONLY = getattr(os, "O_PATH", os.O_RDONLY)  # a directory's descriptor for the *at() calls only


class Local:
    """A directory opened once (at the start if it exists): every step is relative to it,
    so a link put in its place since (by a writer of a directory above) changes nothing."""

    def __init__(self, directory):
        self.directory, self._fd = directory, None
        self.unfinished = []  # write_new's: what a failed write may have left
        self.written = {}  # write_new's: name -> (payload salt, bytes) of the file it wrote whole
        self.unremoved = {}  # discard()'s: what the last try to remove a file left, by name
        try:
            self._dir()
        except OSError:  # not there yet (writer makes it), or an error the first step says
            pass

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def _dir(self):  # O_PATH: a directory one may search but not list still serves
        if self._fd is None:
            self._fd = os.open(self.directory, _PATH_ONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._fd

    def _reopened(self):  # the directory itself, to read (list, fsync), through its descriptor
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self._dir())

    def opened(self):
        """The directory open to read (its lock, its listing), the caller's to close: the
        one this store opened, whatever its name leads to by now; OSError if it cannot be."""
        return self._reopened()

    def refuse_led_elsewhere(self, allow_shared, doing):
        """73 when a user other than the caller or root could lead the directory's name
        elsewhere (a link on the way they could point, a directory above it they can
        write): a link put in its place led prune to root's archive. The directory itself
        may be another's (root prunes the backups' user's): each file is removed through
        the directory opened, as it was listed; not there: left to the listing (66)."""
        if allow_shared:
            return
        try:
            fd = self._reopened()
        except OSError:
            return
        try:
            real, found = writers.way_writer(self.directory)
            found = found or writers.first_other_writer(os.path.dirname(real))
            if not found and not safefile.same_file(os.fstat(fd), os.stat(real)):
                raise Changed(f"{self.directory} changed while it was opened")
        finally:
            os.close(fd)
        if found:
            raise UnsafeDirectory(f"{found[0]} can be written by {found[1]}, who could lead "
                                  f"{self.directory} elsewhere; refusing to {doing} it",
                                  hint=f"run this where only {writers._owners()} can change the way to it, "
                                  f"or pass {writers.ALLOW_FLAG}")

    def where(self, name):
        return os.path.join(self.directory, name)

    def list(self):
        try:
            fd = self._reopened()
            try:
                names = sorted(os.listdir(fd))
            finally:
                os.close(fd)
        except OSError as e:
            raise self._unreadable(e) from None
        items = (self._item(name) for name in names)
        return [item for item in items if item is not None]

    def _unreadable(self, e):  # out of descriptors: 74, as any resource that ran out
        return unreadable(f"cannot read backup directory {shown_name(self.directory, what='DIR')}: {e.strerror or e}", e)

    def locked(self, seconds, on_wait):
        """A descriptor of the directory holding its lock (dirlock: encpipe-backup's,
        waited for up to `seconds`, `on_wait()` first; else Changed, 75); close it to
        let go. Not there or unreadable: the error list() gives."""
        try:
            fd = self._reopened()
        except OSError as e:
            raise self._unreadable(e) from None
        try:
            dirlock.turn(fd, self.directory, seconds, on_wait)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def stat(self, name):
        return self._item(name) or Item(name, error="not a regular file")

    head = stat  # what this run has just written (Rclone.head)

    def _item(self, name):
        """A file that is no link by one look at its name (lstat): its inode, size, time
        and owner all that file's. A second look, for a link's target, once also gave a
        file's own (which was opened and authenticated, by its inode) another's size, time
        and owner: a writer who put a link to the newest backup under their file's name
        between the two, then their file back, had it counted as that backup's owner's."""
        try:
            link = os.lstat(name, dir_fd=self._dir())
            info = os.stat(name, dir_fd=self._dir()) if stat.S_ISLNK(link.st_mode) else link
        except OSError as e:
            return Item(name, error=f"cannot read {name}: {e.strerror or e}", unreadable=True)
        if stat.S_ISDIR(info.st_mode):
            return None
        if not stat.S_ISREG(info.st_mode):
            return Item(name, error="not a regular file")
        return Item(name, info.st_size, identity=(link.st_dev, link.st_ino), link=not stat.S_ISREG(link.st_mode),
                    mtime=info.st_mtime, uid=info.st_uid)

    def _target(self, name):
        """What the link `name` leads to, opened to read only once it is seen to be a regular
        file: the link may have been pointed since it was listed, and opening some devices
        does something (a watchdog, a tape that rewinds), a FIFO wakes its writer."""
        fd = open_if_regular(name, os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=self._dir())
        if fd is None:
            raise OSError(f"{name} is not a regular file")
        return fd

    def trusted_owners(self):
        """Whose files' modification times are taken at their word (older_than_its_name):
        the caller's, root's and the directory's owner's (the backups' user, when
        another prunes). Another user who can write the directory may have planted a
        file of theirs, with any time."""
        return {os.geteuid(), 0, os.fstat(self._dir()).st_uid}

    def open(self, item):
        """The very file listed as `item`, its first item.size bytes: never through a
        link not listed as one, never a file put in its place since, and an error
        rather than more bytes when it grows (a writer cannot make a read endless)."""
        return io.BufferedReader(AsListed(self._open(item), item.name, item.size), CHUNK)

    def _open(self, item):
        safefile.hook("opening", self.directory, item.name)
        changed = OSError(f"{item.name} changed since it was listed")
        try:  # O_NONBLOCK: never block on a FIFO; O_NOCTTY: never take a terminal for its own
            fd = self._target(item.name) if item.link else os.open(
                item.name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=self._dir())
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise changed from None
            raise
        src = os.fdopen(fd, "rb", buffering=0)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            src.close()
            raise OSError(f"{item.name} is not a regular file")
        if item.identity and not item.link and ((info.st_dev, info.st_ino) != item.identity
                                                or info.st_size != item.size):
            src.close()
            raise changed
        return src

    def tail(self, item, size):
        """The last `size` bytes of a file (a v2 trailer), the rest unread."""
        with self._open(item) as src:
            src.seek(-size, os.SEEK_END)
            return src.read(size)

    def writer(self, name, final):
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        dst = os.fdopen(os.open(name, flags, 0o600, dir_fd=self._dir()), "wb")
        safefile.hook("created", self.directory, name, final)
        return _LocalWriter(dst, lambda: [safefile.hook(step, self.directory, name, final)
                                          for step in ("written", "verified")], self.where(name))

    def rename(self, name, final):
        """Rename only the file this user's upload made: a regular file it owns with
        one link, still there under `final` after the rename (else undone, 75)."""
        try:
            return self._rename(name, final)
        except OSError as e:  # the temporary file gone, a directory put there meanwhile...
            raise IOFailure(f"cannot rename {self.where(name)} to {final}: {e.strerror or e}") from None

    def _rename(self, name, final):
        d = self._dir()
        if self.lexists(final):
            raise IOFailure(f"{self.where(final)} already exists")
        safefile.hook("renaming", self.directory, name, final)
        mine = os.lstat(name, dir_fd=d)
        if not stat.S_ISREG(mine.st_mode) or mine.st_uid != os.geteuid() or mine.st_nlink != 1:
            raise Changed(f"{self.where(name)} was replaced while it was written; not stored")
        os.rename(name, final, src_dir_fd=d, dst_dir_fd=d)
        safefile.hook("renamed", self.directory, name, final)
        now = os.lstat(final, dir_fd=d)
        if not (stat.S_ISREG(now.st_mode) and safefile.unchanged(now, mine)):
            os.unlink(final, dir_fd=d)
            raise Changed(f"{self.where(final)} was replaced while it was renamed; not stored")
        self.done()
        return now

    def lexists(self, name):
        try:
            os.lstat(name, dir_fd=self._dir())
        except FileNotFoundError:
            return False
        return True

    def take_back(self, final, renamed):
        """Remove `final` again if it is still the very file renamed (its owner's, same inode, size, time)."""
        try:
            now = os.lstat(final, dir_fd=self._dir())
            if stat.S_ISREG(now.st_mode) and now.st_uid == os.geteuid() and safefile.unchanged(now, renamed):
                os.unlink(final, dir_fd=self._dir())
                self.done()
        except FileNotFoundError:
            pass

    def remove(self, item):
        """Unlink the very file listed (not a link, not a file put there since, nor one
        renamed over its name while it is removed: see removal.py)."""
        remove_listed(self._dir(), self.directory, item.name, item.identity)

    def put_back_held(self):
        """Files a killed prune left in its hold directory, back under their names (removal.put_back_held):
        the hold directories that stay. The directory is listed through its own descriptor."""
        fd = self._reopened()
        try:
            return put_back_held(fd)
        finally:
            os.close(fd)

    def discard(self, name):
        try:
            os.unlink(name, dir_fd=self._dir())
        except FileNotFoundError:
            pass
        except OSError:  # on a read-only DIR, EROFS comes before ENOENT: a file never made is no file left
            try:
                os.lstat(name, dir_fd=self._dir())
            except FileNotFoundError:
                return
            raise

    def done(self):  # a rename or removal made durable, through the directory's descriptor
        try:
            safefile.fsync_directory(".", dir_fd=self._dir())
        except OSError:  # best effort: the change itself has happened
            pass


WRITEBACK = 32 << 20


class _LocalWriter:
    """Writes a backup file. Every WRITEBACK bytes it asks the kernel to start
    writing the last ones out and to drop from the page cache what is already on
    disk (POSIX_FADV_DONTNEED does both on Linux): the fsync at the end then has
    little left to wait for, and a backup does not push the database's own pages
    out of the cache. A write that fails (a full disk, a file size limit) is IOFailure
    naming the file: seal's own word for it, `cannot write output`, read as standard output's."""

    def __init__(self, dst, written, where):
        self.dst, self.written, self.where = dst, written, where
        self.size = self.marked = 0

    def write(self, block):
        try:
            self._write(block)
        except OSError as e:
            raise IOFailure(f"cannot store {self.where}: {reason(e)}") from None

    def _write(self, block):
        self.dst.write(block)
        self.size += len(block)
        if self.size - self.marked >= WRITEBACK:
            self.dst.flush()
            start = max(0, self.marked - WRITEBACK)
            try:
                os.posix_fadvise(self.dst.fileno(), start, self.size - start, os.POSIX_FADV_DONTNEED)
            except (AttributeError, OSError):
                pass
            self.marked = self.size

    def close(self):
        self.dst.flush()
        os.fsync(self.dst.fileno())
        self.dst.close()
        self.written()

    def abort(self):
        """Closes the file unfinished (write_new removes it); an error doing so is not the run's."""
        try:
            self.dst.close()
        except OSError:
            pass
