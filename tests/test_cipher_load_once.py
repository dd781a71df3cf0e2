"""The cipher library is imported by one thread at a time (aead.library).

encpipe-backup seals the dump and the globals in two threads, and the first seal
of each loaded the library: two imports of `cryptography` at once. Under an
address-space limit (tests/test_exhaustion.py, about one run in twenty at 55 MiB)
the two hung for ever, the globals' thread inside the Rust module's
initialisation and the dump's waiting for its module lock. Here the load is made
slow, and three threads ask for it at once: one loads it, the others wait and
take what it loaded; never two loads at once, nor two loads."""

import threading
import time

from encpipe import aead


class Slow:
    """A load that takes 0.2 s, counting how many run at once (most) and in all (done)."""

    def __init__(self):
        self.running, self.most, self.done = 0, 0, []

    def __call__(self, *_):
        self.running += 1
        self.most = max(self.most, self.running)
        time.sleep(0.2)
        made = object()
        self.done.append(made)
        self.running -= 1
        return made


def at_once(ask):
    """What `ask()` returns in each of three threads started together."""
    got = []
    threads = [threading.Thread(target=lambda: got.append(ask())) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return got


def test_two_threads_asking_at_once_load_the_library_once(monkeypatch):
    slow = Slow()
    monkeypatch.setattr(aead, "_unusable", lambda chosen: slow(chosen) and None)
    monkeypatch.setattr(aead, "_usable", {})
    assert at_once(aead.library) == [aead.name()] * 3
    assert (slow.most, len(slow.done)) == (1, 1)


def test_two_threads_making_a_curve_class_at_once_import_it_once():
    """So for the curve arithmetic (x25519.py, signing.py: aead.made_once), which
    a remote listing's threads reach at once (an identity's slot, a signature)."""
    slow, kept = Slow(), {}
    got = at_once(lambda: aead.made_once(kept, dict.fromkeys(aead.NAMES, slow)))
    assert (slow.most, got) == (1, slow.done * 3)
