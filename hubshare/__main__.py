"""The `hubshare` command (also `python -m hubshare`). A flow command's temporary Prefect server
is started here, before the CLI and the stack it sits on are imported: its own start-up (about
7 s) then overlaps with theirs."""

from __future__ import annotations

import sys


def main() -> None:
    from hubshare.temporary_server import start_early_for  # no Prefect, no polars

    start_early_for(sys.argv[1:])
    from hubshare.cli import main as run_command

    run_command()


if __name__ == "__main__":
    main()
