"""The `hubshare` command (also `python -m hubshare`). A flow command's temporary Prefect server
is started here, before the CLI and the stack it sits on are imported: its own start-up (about
7 s) then overlaps with theirs."""

from __future__ import annotations

import os
import sys

#: polars' allocator (jemalloc) returns freed pages to the system within 100 ms, on its own
#: thread: each stage's peak then starts from what is alive, not from what earlier stages left
#: behind (1.31 GB against 1.65 GB peak RSS for a 1M-model run, at the same speed). Read once,
#: when polars loads; a value already in the environment wins. `deployments/prefect.yaml`
#: passes the same to the flows a worker runs.
POLARS_ALLOCATOR = "background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0"


def main() -> None:
    os.environ.setdefault("_RJEM_MALLOC_CONF", POLARS_ALLOCATOR)
    from hubshare.temporary_server import start_early_for  # no Prefect, no polars

    start_early_for(sys.argv[1:])
    from hubshare.cli import main as run_command

    run_command()


if __name__ == "__main__":
    main()
