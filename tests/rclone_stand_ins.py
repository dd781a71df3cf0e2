"""Stand-ins for rclone that write what a test gives them: a listing (`rclone lsjson`)
or an object's stat (`lsjson --stat`), or an output without end."""

from spies import python_head


def lsjson(tmp_path, output, status=0, said="", words=("lsjson",)):
    """An rclone whose command `words` (its first arguments: `lsjson`, or `lsjson --stat`)
    writes `output` (bytes), says `said` on its standard error and exits `status`;
    nothing else of rclone's."""
    (tmp_path / "output").write_bytes(output)
    asked = " && ".join(f'[ "${n}" = {word} ]' for n, word in enumerate(words, 1))
    rclone = tmp_path / "rclone"
    rclone.write_text(f'#!/bin/sh\n{asked} || exit 1\ncat "{tmp_path}/output"\n'
                      f'[ -n "{said}" ] && echo "{said}" >&2\nexit {status}\n')
    rclone.chmod(0o755)
    return str(rclone)


def endless(tmp_path, before="", after=""):
    """An rclone that, for any command, writes `before`, an entry of 64 MiB on one line,
    `after` and a line end, then makes tmp_path/finished: the path of the program."""
    rclone = tmp_path / "rclone"
    rclone.write_text(f"""{python_head()}
import sys
sys.stdout.buffer.write(b'{before}{{"Name":"')
for _ in range(1024):
    sys.stdout.buffer.write(b"a" * 65536)
sys.stdout.buffer.write(b'","Size":1}}{after}\\n')
sys.stdout.buffer.flush()
open("{tmp_path}/finished", "w").close()
""")
    rclone.chmod(0o755)
    return str(rclone)
