"""``python -m gateway.plans.decoder json|yaml``: decode and check a snapshot in a child process.

Reads the document on stdin. On success writes the compact form's length on one line, the
compact form, then the document to persist if it differs from the input (see
:func:`gateway.plans.document.check_document`), and exits 0. A malformed document exits with
:data:`gateway.plans.document.CHECK_FAILED` and the reason on stderr.
"""

from __future__ import annotations

import os
import sys

from gateway.plans.document import CHECK_FAILED, Fetched, check_document
from gateway.plans.snapshot import SnapshotError

CHILD_NICENESS = 10


def main() -> int:
    # Background work: on a busy machine, the processes serving requests go first.
    os.nice(CHILD_NICENESS)
    content = sys.stdin.buffer.read()
    fetched = Fetched(content, "", yaml=sys.argv[1:] == ["yaml"])
    try:
        compact, persisted = check_document(fetched)
    except SnapshotError as exc:
        print(exc, file=sys.stderr)
        return CHECK_FAILED
    out = sys.stdout.buffer
    out.write(b"%d\n" % len(compact))
    out.write(compact)
    if persisted is not content:
        out.write(persisted)
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
