"""scripts/bench runs end to end (--quick) and prints every row; no timing is checked."""

import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "bench")


def _load_bench_module():
    loader = importlib.machinery.SourceFileLoader("encpipe_bench", BENCH)
    spec = importlib.util.spec_from_loader("encpipe_bench", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    work = tmp / "work"
    work.mkdir()
    report = tmp / "report.json"
    proc = subprocess.run(
        [sys.executable, BENCH, "--quick", "--json", str(report), "--workdir", str(work)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, report, work


def test_script_is_executable_with_a_python_shebang():
    assert os.access(BENCH, os.X_OK)
    with open(BENCH) as f:
        assert f.readline() == "#!/usr/bin/env python3\n"


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
        "cat < dump.sql | psql",
        "encpipe open < dump.enc | psql",
        "Goals",
        "load:",
    ] + [f"{n}. [" for n in range(1, 8)]
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
    assert ("python3 -I -c pass", None) in keys
    for row in document["rows"]:
        assert row["median_s"] > 0, row
        assert len(row["walls_s"]) >= 1 and all(cpu >= 0 for run in row["cpu_s"] for cpu in run)
    sealed = [row for row in document["rows"] if row["label"].startswith("encpipe seal (auto")]
    assert sealed and all(row["peak_rss_bytes"] > 0 and row["cpu_median_s"] > 0 for row in sealed)
    assert {(r["bytes"], r["chunk"], r["cipher"]) for r in document["rss"]} == {
        (size, chunk, cipher) for size in (1 << 20, 8 << 20) for chunk in ("16K", "auto", "16M")
        for cipher in ("cryptography", "pycryptodome")}
    assert all(r["seal_rss_bytes"] > 0 and r["open_rss_bytes"] > 0 for r in document["rss"])
    assert {g["goal"] for g in document["goals"]} == {1, 2, 3, 4, 5, 6, 7}


def test_quick_run_leaves_no_files_behind(quick_run):
    _, _, work = quick_run
    assert list(work.iterdir()) == []


def test_sizes_accept_binary_suffixes():
    bench = _load_bench_module()
    assert bench.parse_size("1G") == 1 << 30
    assert bench.parse_size("64M") == 64 << 20
    assert bench.parse_size("16k") == 16 << 10
    assert bench.parse_size("4GiB") == 4 << 30
    assert bench.parse_size("123") == 123
    assert bench.parse_sizes("64M,4G") == [64 << 20, 4 << 30]
    with pytest.raises(Exception):
        bench.parse_size("lots")


def test_bad_option_is_a_usage_error():
    proc = subprocess.run([sys.executable, BENCH, "--rounds", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "must be positive" in proc.stderr
