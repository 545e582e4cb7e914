"""The temporary Prefect server of one `hubshare` command, when no PREFECT_API_URL is set.

Prefect would start one itself, but as a plain child of the command: a Ctrl-C in the terminal
reaches it too, so it dies first and the command then spends minutes retrying to report the
interrupted run; and a SIGKILLed command leaves it running. This one runs in its own session
(the terminal's Ctrl-C reaches only the command) and watches a pipe from the command: when the
command exits, however it exits, the pipe closes and the server stops. It listens on a socket the
command bound, so no port can be taken in between, and starts while the command imports the rest
of the stack.

`python -m hubshare.temporary_server FD` is the server side; `start_temporary_server` the other.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

from hubshare.errors import HubshareError

if TYPE_CHECKING:
    import httpx  # imported when first needed: the server starts before anything heavy

#: What Prefect's own temporary server sets: no UI, only the services a run needs.
SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}


#: Read-only requests that reach every API router a `hubshare` run uses (`_warm_up`).
WARM_UP_REQUESTS: tuple[tuple[str, str, dict[str, int] | None], ...] = (
    ("GET", "/admin/version", None),
    ("POST", "/flows/filter", {"limit": 1}),
    ("POST", "/flow_runs/filter", {"limit": 1}),
    ("POST", "/task_runs/filter", {"limit": 1}),
    ("POST", "/artifacts/filter", {"limit": 1}),
    ("POST", "/logs/filter", {"limit": 1}),
)


class TemporaryServerError(HubshareError):
    """The temporary Prefect server did not start."""


class TemporaryServer:
    """A started server process and its API URL; `wait_until_healthy` before use."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, log: IO[bytes], timeout: float
    ) -> None:
        self.process = process
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.timeout = timeout
        self.healthy = False
        self._log = log
        self._warm = threading.Thread(target=self._warm_up, name="warm-prefect", daemon=True)
        self._warm.start()

    def wait_until_healthy(self) -> None:
        """Return once the API answers (at once after the first time)."""
        import httpx

        if self.healthy:
            return
        timeout = self.timeout
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise TemporaryServerError(
                        f"the temporary Prefect server exited with code {self.process.returncode}"
                        f" before it answered: {self._last_log_line()} (set PREFECT_API_URL to "
                        "use a running Prefect server instead)"
                    )
                if self._answers(client):
                    self.healthy = True
                    # The warm-up's requests are the first ones: let them finish first.
                    self._warm.join(max(0.0, deadline - time.monotonic()))
                    return
                time.sleep(0.05)
        self.stop()
        raise TemporaryServerError(
            f"the temporary Prefect server did not answer within {timeout:.0f} s "
            "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS; or set PREFECT_API_URL to use a "
            "running Prefect server)"
        )

    def _answers(self, client: httpx.Client) -> bool:
        """Whether the server's health endpoint answers yet."""
        import httpx

        try:
            return client.get(f"{self.api_url}/health").status_code == 200
        except httpx.TransportError:
            return False

    def _warm_up(self) -> None:
        """Once the server answers, send it the first requests of a run (read-only), and
        import what a flow run imports late (on this thread, while the command still imports
        and prepares): the server builds each API router's routes on its first request to it,
        1-2 s of work that a run would otherwise wait for after the server is healthy. Best
        effort: any failure is left to `wait_until_healthy` and the run to meet."""
        try:
            import httpx

            with httpx.Client(timeout=10) as client:
                deadline = time.monotonic() + self.timeout
                while self.process.poll() is None and time.monotonic() < deadline:
                    if self._answers(client):
                        break
                    time.sleep(0.05)
                else:
                    return
                for method, path, body in WARM_UP_REQUESTS:
                    client.request(method, f"{self.api_url}{path}", json=body)
            importlib.import_module("fastapi.encoders")  # a flow run's parameters need it
        except Exception:  # noqa: BLE001, S110 - best effort, see above
            pass

    def _last_log_line(self) -> str:
        self._log.seek(0)
        lines = [line for line in self._log.read().decode(errors="replace").splitlines() if line]
        return lines[-1] if lines else "no output"

    def stop(self) -> None:
        """Close the pipe (the server's signal to stop) and wait for it, briefly."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def start_temporary_server(timeout: float = 120) -> TemporaryServer:
    """Start the server and return at once (it becomes healthy in a few seconds)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    log = tempfile.TemporaryFile()  # noqa: SIM115 - owned by the TemporaryServer
    try:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "hubshare.temporary_server", str(listener.fileno())],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
            start_new_session=True,
            env=os.environ | SERVER_ENV,
        )
    finally:
        listener.close()  # the server holds its own copy
    return TemporaryServer(process, port, log, timeout)


@contextmanager
def serving_several_commands(timeout: float = 120) -> Iterator[str]:
    """A temporary server for several `hubshare` commands in turn, its API URL for their
    PREFECT_API_URL: each would otherwise start and stop its own, several CPU seconds each (the
    benchmarks that measure sizes or stage times, not whole processes)."""
    server = start_temporary_server(timeout)
    try:
        server.wait_until_healthy()
        yield server.api_url
    finally:
        server.stop()


#: A server started by `start_early`, for `prefect_api` to use.
_EARLY: list[TemporaryServer] = []


#: Commands that run flows, and so need a Prefect API.
FLOW_COMMANDS = frozenset({"run", "backfill", "demo"})


def start_early() -> None:
    """Start the temporary server at once, before the command imports Prefect and the rest of
    the stack (several seconds it would otherwise wait for), unless PREFECT_API_URL is set."""
    if not os.environ.get("PREFECT_API_URL") and not _EARLY:
        _EARLY.append(start_temporary_server(_startup_timeout()))


def start_early_for(arguments: list[str]) -> None:
    """`start_early` if the command line names a flow command (and does not ask for help)."""
    if FLOW_COMMANDS & set(arguments[:2]) and "--help" not in arguments:
        start_early()


def _startup_timeout() -> float:
    return float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))


@contextmanager
def prefect_api() -> Iterator[TemporaryServer | None]:
    """The Prefect API for this command: the configured PREFECT_API_URL if any, else a temporary
    server that stops with the command. Call `wait_until_healthy` on a yielded server before the
    first flow (imports can run meanwhile)."""
    start_early()  # before importing Prefect: the server starts while we import
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    server = _EARLY.pop() if _EARLY else None
    if server is None or PREFECT_API_URL.value():  # an API of the environment or a profile
        if server is not None:
            server.stop()
        yield None
        return
    try:
        # No flow-run heartbeats: they tell a lasting server that a run's process died, but this
        # server dies with the process; and a run's end waits up to 1 s for the heartbeat thread.
        updates = {PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
        with temporary_settings(updates=updates):
            try:
                yield server
            finally:
                send_pending_logs_and_events()
    finally:
        server.stop()


def send_pending_logs_and_events() -> None:
    """Prefect sends logs and events from background workers that would otherwise flush at exit,
    after a temporary server is gone, retrying for minutes: flush them while it still answers
    (and before a command leaves without the interpreter's teardown)."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        # Best effort: the run's outcome stands whether or not its last logs arrive.
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=5)


def _stop_when_the_command_exits() -> None:
    """Block until the command's end of the pipe closes (exit, crash or SIGKILL), then stop."""
    sys.stdin.buffer.read()
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown
    time.sleep(10)
    os._exit(1)


def serve(fd: int) -> None:
    import uvicorn

    listener = socket.socket(fileno=fd)
    threading.Thread(target=_stop_when_the_command_exits, daemon=True).start()
    config = uvicorn.Config(
        "prefect.server.api.server:create_app",
        factory=True,
        log_level="error",
        lifespan="on",
    )
    uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    serve(int(sys.argv[1]))
    sys.exit(0)
