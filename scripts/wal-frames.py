#!/usr/bin/env python3
"""Counts the frames of a SQLite WAL file per table and index.

Usage: scripts/wal-frames.py DATABASE [ENTRIES]

Reads DATABASE-wal (left by a run whose last connection did not checkpoint it, e.g.
the audit_append bench killed or copied mid-run), maps each frame's page number to the
b-tree that owns the page (SQLite's `dbstat` table, through the sqlite3 command) and
prints the frames per b-tree; with ENTRIES (how many audit entries the frames carry:
the rise of max(seq) over the WAL's transactions), also the frames per entry.
"""
import struct
import subprocess
import sys
from collections import Counter


def main():
    db = sys.argv[1]
    with open(db + "-wal", "rb") as f:
        data = f.read()
    if len(data) < 32:
        sys.exit("empty WAL")
    page_size = struct.unpack(">I", data[8:12])[0]
    salt = data[16:24]
    pages = Counter()
    commits = 0
    off = 32
    while off + 24 + page_size <= len(data):
        pgno, commit_size = struct.unpack(">II", data[off:off + 8])
        if data[off + 8:off + 16] != salt:
            break  # frames of an older WAL generation
        pages[pgno] += 1
        commits += commit_size != 0
        off += 24 + page_size
    owner = {}
    out = subprocess.run(
        ["sqlite3", "-readonly", db, "SELECT pageno, name FROM dbstat"],
        capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        pgno, name = line.split("|", 1)
        owner[int(pgno)] = name
    per = Counter()
    for pgno, n in pages.items():
        per[owner.get(pgno, "(free or new)")] += n
    total = sum(per.values())
    entries = int(sys.argv[2]) if len(sys.argv) > 2 else None
    print(f"{total} frames in {commits} commits, page size {page_size}")
    for name, n in per.most_common():
        extra = f"  {n / entries:.2f}/entry" if entries else ""
        print(f"{name:<28} {n:>8}{extra}")


if __name__ == "__main__":
    main()
