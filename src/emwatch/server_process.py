"""Local servers as child processes: a port to listen on, waiting until one listens, stopping it, and
running it as an unprivileged user when we are root."""

from __future__ import annotations

import logging
import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
DIRECTORY_CAPS = ((2, "dac_read_search"), (1, "dac_override"))  # (bit, name), narrowest first


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def claim_port(port: int | None) -> int:
    """`port`, or a free one; fail early if another server has it (we would talk to that one instead)."""
    if port is None:
        return free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do: connections of a previous run in TIME_WAIT must not block a restart.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)  # with SO_REUSEADDR only a listening socket conflicts; prove none exists
        except OSError as exc:
            raise RuntimeError(f"port {port} on 127.0.0.1 is already in use") from exc
    return port


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a server's log, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_server(proc: subprocess.Popen[bytes], sig: signal.Signals, name: str) -> None:
    """Stop a child server with `sig`, killing it if it has not exited within 30 s."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) did not stop in 30 s; killing it", name, proc.pid)
            proc.kill()
            proc.wait()
    log.info("stopped %s (pid %d)", name, proc.pid)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], name: str, log_path: Path) -> None:
    """Return once the child listens on `port`; kill it and raise (with its log) if it never does."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if proc.poll() is None:
                    return
        except OSError:
            time.sleep(0.05)
    stop_server(proc, signal.SIGKILL, name)
    raise RuntimeError(f"{name} did not start on port {port}; log {log_path}:\n{log_tail(log_path)}")


def unprivileged_prefix(data_dir: Path) -> list[str]:
    """Command prefix that runs a server as an unprivileged user when we are root (postgres refuses root)."""
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        user = pwd.getpwnam("nobody")
    for path in [data_dir, *data_dir.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
    prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    status = Path("/proc/self/status").read_text().splitlines()
    effective = int(next(ln for ln in status if ln.startswith("CapEff:")).split()[1], 16)
    # A capability to pass through directories only root may enter (/root, pytest's temp dir).
    cap = next((name for bit, name in DIRECTORY_CAPS if effective & (1 << bit)), None)
    if cap is not None:
        prefix += [f"--inh-caps=+{cap}", f"--ambient-caps=+{cap}"]
    return [*prefix, "--"]
