"""A fake external program for oracle=command: ``fake_command.py [--exit-after N] QUERY OUTPUT``.

Writes ``id,label`` rows to OUTPUT one at a time (as ``fake_oracle.label`` gives them: ``nan``
for ids ending in 7, no row for ids ending in 3), appending each computed id to the file named
by ``FAKE_ORACLE_LOG`` (when set); with ``--exit-after N`` it stops after N rows with status 1.
"""

import csv
import os
import sys

from fake_oracle import value

args = sys.argv[1:]
exit_after = None
if args[0] == "--exit-after":
    exit_after, args = int(args[1]), args[2:]
query, output = args
with open(query, newline="") as f:
    rows = list(csv.DictReader(f))
with open(output, "w") as out:
    out.write("id,label\n")
    for n, row in enumerate(rows):
        if exit_after is not None and n == exit_after:
            sys.exit(1)
        if os.environ.get("FAKE_ORACLE_LOG"):
            with open(os.environ["FAKE_ORACLE_LOG"], "a") as log:
                log.write(row["id"] + "\n")
        if row["id"].endswith("3"):
            continue
        got = value(row["id"], row["smiles"])
        out.write(f"{row['id']},{'nan' if got is None else got}\n")
        out.flush()
