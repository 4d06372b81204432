#!/usr/bin/env python3
"""Looks for plaintext secrets in every Postgres table and every Redis key after an end-to-end run.

    scripts/scan-plaintext.py --secrets FILE --db URL [--db URL ...] --redis-pattern 'prefix:*' [...]

FILE holds one secret per line as `label<TAB>value` (e.g. `upstream access#1<TAB>…`). Every row
of every table in the `public` schema of each database (as Postgres prints it with COPY … TO STDOUT,
so bytea shows as hex and every column type as text) and every Redis key under the patterns (the
key name and its value, read by type: string, hash, list, set, sorted set, stream) are searched
for each value, and for its base64/hex encodings too. Prints what was scanned and the labels of the
secrets found (never the secrets); exits 1 if any was found, 2 if the scan itself failed.
"""

import argparse
import base64
import subprocess
import sys


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, **kw).stdout


def tables(db):
    out = run(["psql", db, "-At", "-c",
               "SELECT quote_ident(table_name) FROM information_schema.tables "
               "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"])
    return [t for t in out.decode().split("\n") if t]


def dump_table(db, table):
    return run(["psql", db, "-Aq", "-c", f"COPY (SELECT * FROM {table}) TO STDOUT"])


def redis_keys(pattern):
    out = run(["redis-cli", "--scan", "--pattern", pattern])
    return [k for k in out.decode(errors="replace").split("\n") if k]


def redis_value(key):
    kind = run(["redis-cli", "TYPE", key]).decode().strip()
    reads = {
        "string": [["GET", key]],
        "hash": [["HGETALL", key]],
        "list": [["LRANGE", key, "0", "-1"]],
        "set": [["SMEMBERS", key]],
        "zset": [["ZRANGE", key, "0", "-1", "WITHSCORES"]],
        "stream": [["XRANGE", key, "-", "+"]],
    }.get(kind, [])
    return kind, b"\n".join(run(["redis-cli", *r]) for r in reads)


def encodings(value):
    raw = value.encode()
    forms = {raw, raw.hex().encode(), base64.b64encode(raw), base64.urlsafe_b64encode(raw).rstrip(b"=")}
    return [f for f in forms if len(f) >= 8]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--secrets", required=True)
    p.add_argument("--db", action="append", default=[])
    p.add_argument("--redis-pattern", action="append", default=[])
    a = p.parse_args()

    secrets = []
    with open(a.secrets) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            label, _, value = line.partition("\t")
            if len(value) < 16:
                print(f"scan: secret {label!r} is too short to scan for meaningfully", file=sys.stderr)
                return 2
            secrets.append((label, encodings(value)))
    if not secrets:
        print("scan: no secrets given: nothing would be proven", file=sys.stderr)
        return 2

    blobs = []  # (where, bytes)
    rows = 0
    for db in a.db:
        name = db.rsplit("/", 1)[-1]
        ts = tables(db)
        for t in ts:
            data = dump_table(db, t)
            rows += data.count(b"\n")
            blobs.append((f"postgres {name}.{t}", data))
        print(f"scan: {name}: {len(ts)} tables")
    keys = 0
    for pattern in a.redis_pattern:
        for k in redis_keys(pattern):
            kind, value = redis_value(k)
            blobs.append((f"redis {kind} key {k}", k.encode() + b"\n" + value))
            keys += 1
    print(f"scan: {rows} rows, {keys} redis keys, {len(secrets)} secrets")
    if rows == 0:
        print("scan: no rows at all: the run stored nothing, so the scan proves nothing", file=sys.stderr)
        return 2

    found = 0
    for label, forms in secrets:
        for where, data in blobs:
            if any(f in data for f in forms):
                print(f"scan: FOUND {label} in {where}")
                found += 1
    if found:
        return 1
    print("scan: no plaintext secret in Postgres or Redis")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as e:
        print(f"scan: {' '.join(e.cmd[:2])} failed: {e.stderr.decode(errors='replace').strip()}", file=sys.stderr)
        sys.exit(2)
