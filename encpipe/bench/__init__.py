"""Measure encpipe's speed, memory and start-up against age, openssl and gpg.

    scripts/bench                          # 1 GiB, 5 rounds, PostgreSQL rows if installed
    scripts/bench --size 256M --rounds 7   # smaller input, more rounds
    scripts/bench --quick                  # smoke run: tiny sizes, one round
    scripts/bench --json results.json      # also write every sample as JSON

Every command is a child process, timed with time.perf_counter around it;
its CPU time (user + system of it and every process below it) from os.wait4,
its peak RSS from GNU time (`/usr/bin/time -f %M`) when installed. Before
each timed run the files it reads are read through once, so they come from
the page cache. The rows run alternately, a round at a time, and the tables
show medians; a ratio of two rows is the median of the ratios of their runs
in the same rounds (measure.paired). Peers that are not installed are left out.

Rows:
  throughput  encpipe seal and open, with each cipher library (cryptography
              and pycryptodome), at auto and one thread, at 64K, the default
              and 16M chunks; age, openssl enc (AES-256-CTR and -CBC), gpg
              --symmetric, a plain Python loop over each library's GCM, cat
              (the I/O floor); rewrap, inspect; and through a pipe (cat FILE |)
              encpipe seal and open at their defaults, age and openssl ctr.
              encpipe seals with a raw key, and also (with cryptography, at
              default chunks, auto and one thread, and through a pipe) to an
              X25519 recipient, opened by its identity: like for like with age
  start-up    --version, inspect, keyid, and seal and open of an empty input
              with each library, against `python3 -I -c pass`; and
              `python3 -c 'import docopt'`, the floor of any docopt command
  memory      generator | encpipe seal | encpipe open > /dev/null at each
              --rss-sizes size and --rss-chunks chunk size, and at the last
              chunk size signed (seal --sign-key, open --signer): the input
              never touches the disk; and open --legacy of the previous format
  formats     seal and open (a file on stdin, and through a pipe) in format v1
              next to v2: raw key, raw key with --sign-key (and open --signer),
              an X25519 recipient only, a raw key and an X25519 escrow
              recipient (read twice from a file); v1 is written by the CLI's own code
              with envelope.seal(version=1) (the CLI writes only v2)
  postgresql  in a throwaway cluster (tests/pgcluster.py), a pgbench database
              (--pgbench-scale; 0: rows made with generate_series), paired
              round by round (--pg-rounds) with the same pipeline through cat:
              scripts/encpipe-backup --no-globals with --compress none, zstd
              (the default) and --format custom against pg_dump [| zstd] | cat
              > f; scripts/encpipe-restore of each file into a new database
              against cat FILE [| zstd -d] | (createdb && psql -1), or cat
              FILE | pg_restore -1 -f - | (createdb && psql) for a custom
              archive (pgstream's commands and options); pg_dump | encpipe
              seal > f and encpipe open < dump.enc | psql -1

The modules: measure (running and timing), context (environment, inputs,
peers), rows (throughput, start-up, memory), formats, pg and pgreport,
report (goals and output), main (options).
"""
