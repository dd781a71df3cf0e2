"""scripts/bench runs end to end (--quick) and prints every row; no timing is checked."""

import fcntl
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "bench")


# Secrets of the bench's caller, none of which it needs: the quick run gets them all
# (test_no_child_gets_a_secret_of_the_benchs_environment checks every child of it).
SECRETS = {"AWS_SECRET_ACCESS_KEY": "aws-secret-5c1d", "PGPASSWORD": "libpq-pw-0e72",
           "RCLONE_CONFIG_PASS": "rclone-pass-93ab", "ENCPIPE_PASSPHRASE": "passphrase-d4e8",
           "BACKUP_ENCRYPTION_KEY": "legacy-key-61f0"}


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """One --quick run of every section, with SECRETS in its environment and, when
    openssl is installed, a spy first on PATH that logs each openssl it starts (to
    "log" beside the report). Its --workdir, where the PostgreSQL cluster goes too, is
    one the server can reach (run as root, it runs as postgres: not through pytest's
    own directories, which only their owner can enter). One run for the whole suite:
    the pytest-xdist workers that draw these tests share it (the first makes it, under
    a lock, in the directory above their own; the others wait and read it), where each
    made its own before, two runs of the bench at once."""
    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared
    tmp, lock_path = shared / "bench", shared / "bench.lock"  # short: gpg's socket path must fit
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (tmp / "done.json").exists():
            _quick_run(tmp)
        done = json.loads((tmp / "done.json").read_text())
    proc = subprocess.CompletedProcess(done["args"], done["returncode"], done["stdout"], done["stderr"])
    return proc, tmp / "report.json", done["left"]


def _quick_run(tmp):
    from spies import write

    tmp.mkdir()
    spies, log = tmp / "spies", tmp / "log"
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-work-"))
    work.chmod(0o711)
    spies.mkdir()
    report = tmp / "report.json"
    real = shutil.which("openssl")
    if real:
        write(spies / "openssl", "openssl", [real], log)
    env = {**os.environ, **SECRETS, "PATH": os.pathsep.join([str(spies), os.environ["PATH"]])}
    try:
        proc = subprocess.run(
            [sys.executable, BENCH, "--quick", "--json", str(report), "--workdir", str(work)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        left = sorted(os.listdir(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (tmp / "done.json").write_text(json.dumps({"args": proc.args, "returncode": proc.returncode,
                                               "stdout": proc.stdout, "stderr": proc.stderr, "left": left}))


def test_the_real_interpreter_finds_the_dependencies_on_the_childrens_path():
    """The bench runs the real interpreter behind a virtual environment's python, which reads no
    pyvenv.cfg: on a machine whose interpreter has neither pycryptodome nor docopt (a fresh
    one), every encpipe row failed with 69. The children's PYTHONPATH carries the
    environment's site-packages; -S leaves out whatever the interpreter's own site has."""
    from encpipe.bench.context import venv_site_packages
    root = os.path.dirname(os.path.dirname(BENCH))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, *venv_site_packages()]))
    done = subprocess.run([os.path.realpath(sys.executable), "-S", "-c", "import Crypto, docopt, encpipe.cli"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")


def test_script_is_executable_with_a_python_shebang():
    assert os.access(BENCH, os.X_OK)
    with open(BENCH) as f:
        assert f.readline() == "#!/usr/bin/env python3\n"


FORMAT_ROWS = [
    "seal v1, raw key (the CLI's code, envelope.seal(version=1))",
    "seal v2, raw key",
    "seal v2, raw key, --sign-key",
    "seal v2, X25519 --recipient only",
    "seal v2, raw key and an X25519 escrow recipient",
] + [f"{how}{what}" for how in ("", "cat FILE | ") for what in (
    "open v1 file, raw key",
    "open v2 file, raw key",
    "open v2 signed file, raw key",
    "open --signer v2 signed file, raw key",
    "open v2 X25519 file, --identity",
    "open v2 raw key + escrow file, raw key",
)]
PUBLIC_KEY_ROWS = [f"encpipe {op} ({threads}, default chunks)" for threads in ("auto threads", "1 thread")
                   for op in ("seal --recipient RECIPIENT", "open --identity IDENTITY")] + [
    "cat FILE | encpipe seal --recipient RECIPIENT (defaults)",
    "cat FILE | encpipe open --identity IDENTITY (defaults)",
]
PG_ROWS = [
    "pg_dump db | cat > f",
    "pg_dump db | cat > f && sync f",
    "encpipe-backup --no-globals --compress none",
    "pg_dump db | zstd -3 -T1 | cat > f",
    "pg_dump db | zstd -3 -T1 | cat > f && sync f",
    "encpipe-backup --no-globals (plain, default zstd -3 -T1)",
    "pg_dump -Fc db | cat > f",
    "pg_dump -Fc db | cat > f && sync f",
    "encpipe-backup --no-globals --format custom",
    "pg_dump db | encpipe seal > f",
    "cat dump.sql | (createdb && psql -1)",
    "encpipe-restore FILE db (plain file)",
    "cat dump.zst | zstd -d | (createdb && psql -1)",
    "encpipe-restore FILE db (plain zstd file)",
    "cat dump | pg_restore -1 -f - | (createdb && psql)",
    "encpipe-restore FILE db (custom file)",
    "encpipe open < dump.enc | (createdb && psql -1)",
]


@pytest.mark.slow
def test_quick_run_exits_zero(quick_run):
    proc, _, _ = quick_run
    assert proc.returncode == 0, proc.stderr


def test_quick_run_prints_every_row(quick_run):
    proc, _, _ = quick_run
    out = proc.stdout
    expected = [
        f"{os.path.realpath(sys.executable)} -m encpipe",
        "pycryptodome",
        "cryptography",
        "Throughput",
        "CPU s/GiB",
        "encpipe seal (auto threads, default chunks)",
        "encpipe seal (1 thread, default chunks)",
        "encpipe open (auto threads, default chunks)",
        "encpipe open (1 thread, default chunks)",
        "encpipe seal (auto threads, 64K chunks)",
        "encpipe seal (1 thread, 16M chunks)",
        "encpipe open (1 thread, 64K chunks)",
        "cat FILE | encpipe seal (defaults)",
        "cat FILE | encpipe open (defaults)",
        "python loop, pycryptodome GCM",
        "python loop, cryptography GCM",
        "cat (I/O floor)",
        "encpipe rewrap --add-key-file",
        "encpipe inspect --verify",
        "Start-up",
        "python3 -I -c pass",
        "python3 -c 'import docopt' (parser alone)",
        "encpipe inspect FILE (header only)",
        "encpipe keyid --key-file FILE",
        "encpipe seal < /dev/null (raw key)",
        "encpipe open < empty sealed file",
        "Peak memory",
        "1 MiB",
        "8 MiB",
        "encpipe open --legacy FILE",
        "PostgreSQL",
        "pg_dump db | cat > f",
        "pg_dump db | encpipe seal > f",
        "Goals",
        "load:",
    ] + [f"#16 goal {n} [" for n in range(1, 8)] + FORMAT_ROWS + PUBLIC_KEY_ROWS + PG_ROWS
    if shutil.which("age") and shutil.which("age-keygen"):
        expected += ["age -r RECIPIENT", "age -d -i IDENTITY", "cat FILE | age -r RECIPIENT", "wall x age"]
    if shutil.which("openssl"):
        expected += ["openssl enc -aes-256-ctr", "openssl enc -d -aes-256-ctr", "openssl enc -aes-256-cbc"]
    if shutil.which("gpg"):
        expected += ["gpg --symmetric --compress-algo none", "gpg --decrypt"]
    missing = [text for text in expected if text not in out]
    assert not missing, f"missing {missing} in:\n{out}"


def test_quick_run_writes_json_with_positive_numbers(quick_run):
    _, report, _ = quick_run
    document = json.loads(report.read_text())
    assert document["facts"]["cpus"] >= 1
    keys = {(row["label"], row["cipher"]) for row in document["rows"]}
    for cipher in ("cryptography", "pycryptodome"):
        assert {("encpipe seal (1 thread, default chunks)", cipher), ("encpipe open (1 thread, 16M chunks)", cipher),
                ("encpipe seal < /dev/null (raw key)", cipher)} <= keys
    assert {("python3 -I -c pass", None), ("python3 -c 'import docopt' (parser alone)", None)} <= keys
    for row in document["rows"]:
        assert row["median_s"] > 0, row
        assert len(row["walls_s"]) >= 1 and all(cpu >= 0 for run in row["cpu_s"] for cpu in run)
        if row["group"] != "startup":  # every round's peak RSS of every stage, as its CPU
            assert [len(run) for run in row["rss_bytes"]] == [len(run) for run in row["cpu_s"]], row
            peaks = [peak for run in row["rss_bytes"] for peak in (run if row["group"] == "pg" else run[-1:])]
            assert row["peak_rss_bytes"] == max(peaks), row  # the reported stage's; a pipeline's: every stage's
    sealed = [row for row in document["rows"] if row["label"].startswith("encpipe seal (auto")]
    assert sealed and all(row["peak_rss_bytes"] > 0 and row["cpu_median_s"] > 0 for row in sealed)
    assert {(r["bytes"], r["chunk"], r["cipher"]) for r in document["rss"]} == {
        (size, chunk, cipher) for size in (1 << 20, 8 << 20) for chunk in ("16K", "auto", "16M")
        for cipher in ("cryptography", "pycryptodome")}
    assert all(r["seal_rss_bytes"] > 0 and r["open_rss_bytes"] > 0 for r in document["rss"])
    assert {(g["issue"], g["goal"]) for g in document["goals"]} == {(16, n) for n in range(1, 8)} | {(14, 6), (12, 4)}


def _goals(document, issue, number):
    return [g for g in document["goals"] if (g["issue"], g["goal"]) == (issue, number)]


def test_quick_run_compares_every_v2_row_with_v1(quick_run):
    """Issue 14 acceptance 6: every v2 row is measured, and has a goal line against its v1 row."""
    _, report, _ = quick_run
    document = json.loads(report.read_text())
    rows = {row["label"]: row for row in document["rows"] if row["group"] == "formats"}
    assert sorted(rows) == sorted(FORMAT_ROWS)
    for row in rows.values():
        assert row["median_s"] > 0 and row["cpu_median_s"] > 0 and row["peak_rss_bytes"] > 0, row
    assert "--signer" in rows["open --signer v2 signed file, raw key"]["command"][-1]
    assert rows["cat FILE | open v1 file, raw key"]["command"][0].startswith("cat")
    goals = _goals(document, 14, 6)
    v2_rows = [label for label in FORMAT_ROWS if "v2" in label]
    assert len(goals) == len(v2_rows) and all(g["met"] in (True, False) for g in goals)
    for label, g in zip(v2_rows, goals):
        assert g["text"].startswith(f"{label} [") and "x v1 (v2 at most 1.1x v1 wall and CPU, memory flat)" in g["text"]


def test_quick_run_compares_public_key_rows_with_age_like_for_like(quick_run):
    """Issue 16 goals 1 and 2 like for like: encpipe sealing to an X25519 recipient and opening by its
    identity (no raw key, so no v2 authenticator pass), as age -r and age -d -i do, each with its goal
    lines against age and openssl ctr, next to the raw-key rows' lines."""
    proc, report, _ = quick_run
    document = json.loads(report.read_text())
    rows = {row["label"]: row for row in document["rows"] if row["group"] == "public-key"}
    assert sorted(rows) == sorted(PUBLIC_KEY_ROWS), proc.stdout
    for label, row in rows.items():
        assert row["cipher"] == "cryptography" and row["tool"] == "encpipe" and row["chunk"] == "auto", row
        assert row["median_s"] > 0 and row["cpu_median_s"] > 0 and row["peak_rss_bytes"] > 0, row
        encpipe = row["command"][-1].split()
        assert ("--recipient" if " seal " in label else "--identity") in encpipe and "--key-file" not in encpipe
        if label.startswith("cat FILE | "):
            assert row["command"][0].startswith("cat ") and row["op"].startswith("pipe-") and row["threads"] == "auto"
        else:
            assert len(row["command"]) == 1 and encpipe[-2:] == ["--threads", row["threads"]]
    peers = [("CPU", "x age"), ("wall", "x age")] if shutil.which("age") and shutil.which("age-keygen") else []
    if shutil.which("openssl"):
        peers.append(("CPU", "x openssl ctr"))
    goals = [g for g in document["goals"] if g["issue"] == 16 and g["goal"] in (1, 2)]
    for label in ["encpipe seal (auto threads, default chunks)", "cat FILE | encpipe open (defaults)"]:
        assert [g for g in goals if g["text"].startswith(f"{label} [cryptography]: ")]  # the raw-key lines stay
    for label in PUBLIC_KEY_ROWS:
        name = f"{label} [cryptography], like for like (public key, as age): "
        mine = [g for g in goals if g["text"].startswith(name)]
        found = [g["text"][len(name):].split(" (<= ")[0].split(" ", 2) for g in mine]  # CPU 0.63 x age
        assert [(what, peer) for what, _, peer in found] == peers, mine
        assert all(g["met"] in (True, False) and f"#16 goal {g['goal']} [" in proc.stdout and g["text"] in proc.stdout
                   for g in mine)


def test_quick_run_measures_the_backup_scripts_against_cat(quick_run):
    """Issue 12 acceptance 4 and issue 16 goal 7: encpipe-backup and encpipe-restore of a
    pgbench database, each paired with the same pipeline through cat; never skipped."""
    proc, report, _ = quick_run
    document = json.loads(report.read_text())
    rows = {row["label"]: row for row in document["rows"] if row["group"] == "pg"}
    assert sorted(rows) == sorted(PG_ROWS), proc.stdout
    assert "pgbench scale 1, plain dump of" in proc.stdout
    for label, row in rows.items():
        assert row["median_s"] > 0 and row["file_bytes"] > 0, row
        if label.startswith("encpipe"):
            assert row["paired_with"] in rows and len(row["paired_ratios"]) == len(row["walls_s"]) == 1
        if label.startswith("encpipe-backup"):  # also against a pipeline that syncs its file, as the backup does
            assert row["synced_with"] == row["paired_with"] + " && sync f" and len(row["synced_ratios"]) == 1
    sizes = {v: rows[f"encpipe-backup --no-globals {v}"]["file_bytes"] for v in
             ("--compress none", "(plain, default zstd -3 -T1)", "--format custom")}
    assert sizes["--compress none"] > 10 * sizes["(plain, default zstd -3 -T1)"]
    assert sizes["--compress none"] > sizes["--format custom"]
    assert sizes["--compress none"] > rows["pg_dump db | cat > f"]["file_bytes"]  # sealed: header and tags
    [zstd_goal] = _goals(document, 12, 4)
    assert zstd_goal["met"] in (True, False) and "x smaller" in zstd_goal["text"]
    pipeline = _goals(document, 16, 7)
    assert [g["text"].split(":")[0] for g in pipeline] == [label for label in PG_ROWS
                                                         if label.startswith(("encpipe-backup", "encpipe-restore"))]
    assert all(g["met"] in (True, False) and "paired rounds" in g["text"] for g in pipeline)


def test_no_child_gets_a_secret_of_the_benchs_environment(quick_run):
    """The bench needs none of its caller's secrets (encpipe gets its own key, the cluster
    trusts its clients): a peer (openssl, a spy first on PATH) gets none, and the report
    names, never shows, what it left out."""
    if not shutil.which("openssl"):
        pytest.skip("no openssl")
    from spies import records

    proc, report, _ = quick_run
    assert proc.returncode == 0, proc.stderr
    seen = records(report.parent / "log")
    assert {r["argv"][0] for r in seen} >= {"version", "enc"}, [r["argv"][:1] for r in seen]
    for record in seen:
        held = [e for e in record["env"] if e.partition("=")[0] in SECRETS or
                any(v in e for v in SECRETS.values())]
        assert held == [], (record["argv"][:2], held)
    assert f"not given to any child: {', '.join(sorted(SECRETS))} (secrets; the bench needs none)" in proc.stdout
    assert not any(v in proc.stdout + proc.stderr for v in SECRETS.values())


def test_v1_rows_are_written_by_the_cli_code_in_format_v1(tmp_path):
    """The v1 stub seals through the CLI (same key loading) and writes a v1 file that opens."""
    from encpipe.bench.formats import V1_SEAL

    repo = os.path.dirname(os.path.dirname(BENCH))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCPIPE")}
    env["ENCPIPE_KEY"] = "11" * 32
    data = os.urandom(100_000)
    sealed = tmp_path / "v1.enc"
    with open(sealed, "wb") as out:
        proc = subprocess.run([sys.executable, "-c", V1_SEAL, repo, "seal"], input=data, stdout=out, env=env,
                              stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 0, proc.stderr
    inspect = subprocess.run([sys.executable, "-m", "encpipe", "inspect", "--json", str(sealed)], env=env,
                             capture_output=True, timeout=60)
    assert json.loads(inspect.stdout)["version"] == 1
    opened = subprocess.run([sys.executable, "-m", "encpipe", "open", str(sealed)], env=env, capture_output=True,
                            timeout=60)
    assert opened.returncode == 0 and opened.stdout == data
    refused = subprocess.run([sys.executable, "-c", V1_SEAL, repo, "seal", "--sign-key", str(tmp_path / "none")],
                             input=b"", capture_output=True, env=env, timeout=60)
    assert refused.returncode != 0 and refused.stdout == b"" and b"Traceback" not in refused.stderr


def test_quick_run_leaves_no_files_behind(quick_run):
    """Nothing in --workdir: neither the bench's directory, nor the cluster's, nor its initdb template."""
    _, _, left = quick_run
    assert left == []


def test_sizes_accept_binary_suffixes():
    from encpipe.bench import measure as bench

    assert bench.parse_size("1G") == 1 << 30
    assert bench.parse_size("64M") == 64 << 20
    assert bench.parse_size("16k") == 16 << 10
    assert bench.parse_size("4GiB") == 4 << 30
    assert bench.parse_size("123") == 123
    assert bench.parse_sizes("64M,4G") == [64 << 20, 4 << 30]
    with pytest.raises(Exception):
        bench.parse_size("lots")


@pytest.mark.parametrize("option", ["--rounds", "--pg-rounds"])
def test_bad_option_is_a_usage_error(option):
    proc = subprocess.run([sys.executable, BENCH, option, "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "must be positive" in proc.stderr


def test_a_v1_row_that_is_not_v1_fails_the_formats_section_only(tmp_path_factory):
    """If envelope.seal stopped honouring version=1, the v1 rows would measure v2: the bench
    refuses to report them, keeps the other sections and exits 1."""
    tmp_path = tmp_path_factory.mktemp("v1")  # short: gpg's socket path must fit
    repo = os.path.dirname(os.path.dirname(BENCH))
    shutil.copytree(os.path.join(repo, "encpipe"), tmp_path / "encpipe",
                    ignore=shutil.ignore_patterns("__pycache__"))
    envelope = tmp_path / "encpipe" / "envelope.py"
    text = envelope.read_text()
    start = text.index("\ndef seal(")
    body = text.index("):\n", start) + 3
    envelope.write_text(text[:body] + "    version = fmt.VERSION  # ignores the argument\n" + text[body:])
    work = tmp_path / "work"
    work.mkdir()
    # The smallest run with another section (memory: one row of each kind) beside formats.
    proc = subprocess.run([sys.executable, BENCH, "--quick", "--only", "memory,formats", "--no-pg",
                           "--size", "64K", "--chunk-sizes", "auto", "--rss-sizes", "64K", "--rss-chunks", "auto",
                           "--ciphers", "pycryptodome", "--package-dir", str(tmp_path),
                           "--workdir", str(work)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert "Format v1 and v2\n  FAILED: seal v1, raw key (the CLI's code, envelope.seal(version=1)): the file is " \
           "format v2 with slots ['raw-key'] and 0 signature(s), not v1 with ['raw-key'] and 0" in proc.stdout
    assert "Peak memory" in proc.stdout and "encpipe open --legacy FILE" in proc.stdout
    assert "    64 KiB           auto pycryptodome" in proc.stdout
    assert "#14 goal 6 [-      ] format v1/v2 rows not run" in proc.stdout
    assert list(work.iterdir()) == []
