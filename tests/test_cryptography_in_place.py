"""The in-place path of the fast cipher, with a `cryptography` that takes it.

setup.cfg allows `cryptography` 50, which encrypts and decrypts in place
(encrypt_into and decrypt_into with their output over their input); 51 and later
refuse that, and a fresh install gets the newest, so the rest of the suite runs
the other path (a chunk whole through the thread's buffer, or by pieces:
tests/test_aead_pieces.py). Here a 50 is installed beside the suite (pip
--target, no dependencies: the suite's cffi) and put first on PYTHONPATH of a
child: it must take the in-place path, seal the same bytes as AESGCM.encrypt,
leave a chunk whose tag fails as it was (OpenSSL decrypts before it checks: the
ciphertext is made again under the same nonce), and pass the vectors and the
tamper tests, whose encpipe processes get that PYTHONPATH too."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CHECK = r"""
import os
import cryptography
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from encpipe import aead, gcmlibs
from encpipe.format import TAG_LEN

assert cryptography.__version__.split(".")[0] == "50", cryptography.__version__
os.environ[aead.ENV_CIPHER] = aead.CRYPTOGRAPHY
assert aead.library() == aead.CRYPTOGRAPHY and gcmlibs.Cryptography.in_place is True
for size in (0, 1, gcmlibs.PIECE, gcmlibs.PIECE + 1, 3 * gcmlibs.PIECE + 5):
    key, nonce, data = os.urandom(32), os.urandom(12), os.urandom(size)
    buf = memoryview(bytearray(data) + bytearray(TAG_LEN))  # as the stream's chunk buffers: slices are views
    cipher = aead.gcm(key)
    cipher.seal(nonce, buf, size)
    assert bytes(buf) == AESGCM(key).encrypt(nonce, data, None), size
    for spot in ([size // 2] if size else []) + [size + TAG_LEN - 1]:
        bad = memoryview(bytearray(buf))
        bad[spot] ^= 1
        kept = bytes(bad)
        assert cipher.open(nonce, bad, len(bad)) is False and bytes(bad) == kept, (size, spot)
    assert cipher.open(nonce, buf, size + TAG_LEN) is True and bytes(buf[:size]) == data, size
print("in place")
"""


@pytest.fixture(scope="module")
def cryptography_50(tmp_path_factory):
    target = tmp_path_factory.mktemp("cryptography50")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           "--no-input", "--no-deps", "--target", str(target), "cryptography>=50,<51"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE_")}
    env.update(PYTHONPATH=os.pathsep.join([str(target), ROOT]), ENCPIPE_CIPHER="cryptography")
    return env


def test_a_cryptography_that_encrypts_in_place_takes_the_in_place_path(cryptography_50):
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=cryptography_50,
                          cwd=ROOT, timeout=120)
    assert (done.returncode, done.stdout) == (0, "in place\n"), done.stderr


@pytest.mark.slow
def test_the_vectors_and_the_tamper_tests_pass_with_it(cryptography_50):
    from test_aead import SCRYPT_ONLY

    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                           "-k", SCRYPT_ONLY, "test_vectors.py", "test_tamper.py"],
                          capture_output=True, text=True, env=cryptography_50, cwd=HERE, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1] and "skipped" not in done.stdout.splitlines()[-1]
