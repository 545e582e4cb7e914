"""moto's S3 server with conditional writes atomic, as S3 makes them: the tests' S3 server.

    python -m tests.atomic_moto -H 127.0.0.1 -p PORT

moto checks `If-None-Match: *` and then stores the object, two steps that requests on its
threads can interleave: both writers of a racing create then succeed, where S3 answers the
second with 412. One lock around each PUT of an object gives the fake S3's guarantee, which the
snapshot's create-if-absent protocol relies on (tasks/snapshot.py, `store_snapshot`).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from moto.s3.responses import S3Response
from moto.server import main

_PUT = threading.Lock()
_put_object = S3Response.put_object


def _atomic_put_object(self: S3Response) -> Any:
    with _PUT:
        return _put_object(self)


S3Response.put_object = _atomic_put_object  # type: ignore[method-assign]

if __name__ == "__main__":
    main(sys.argv[1:])
