"""A real nginx in front of receivers, on loopback ports, with a generated config (docs/deployment.md's, made local)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import free_port

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")  # sbin is often not on a user's PATH


def render_config(
    folder: Path,
    port: int,
    receivers: list[str],
    tls: tuple[Path, Path] | None = None,
    max_fails: int = 3,
    fail_timeout_s: int = 10,
) -> str:
    """nginx.conf for a gRPC proxy on 127.0.0.1:`port` that pins each session to one of `receivers`."""
    servers = "\n".join(
        f"        server {address} max_fails={max_fails} fail_timeout={fail_timeout_s}s;" for address in receivers
    )
    ssl = "" if tls is None else f"        ssl_certificate {tls[0]};\n        ssl_certificate_key {tls[1]};\n"
    # As root, nginx's workers would switch to "nobody", who cannot write the test's folders.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temps = "\n".join(
        f"    {kind}_temp_path {folder}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format upstream '$http_latentlink_session $upstream_addr $status';
    access_log {folder}/access.log upstream;
{temps}
    upstream latentlink_receivers {{
        zone latentlink_receivers 64k;
        hash $http_latentlink_session consistent;
{servers}
    }}
    server {{
        listen 127.0.0.1:{port} {"ssl " if tls else ""}http2;
{ssl}        client_max_body_size 0;
        client_body_timeout 300s;
        send_timeout 300s;
        grpc_read_timeout 300s;
        grpc_send_timeout 300s;
        location /latentlink.v1.LatentLink/ {{
            grpc_pass grpc://latentlink_receivers;
            grpc_next_upstream off;
        }}
    }}
}}
"""


@dataclass
class RunningNginx:
    address: str
    folder: Path
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def routes(self) -> list[tuple[str, str, str]]:
        """(session, upstream address(es), status) for every finished stream, from the access log."""
        log = self.folder / "access.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [tuple(line.split(" ", 2)) for line in lines]


def start_nginx(folder: Path, receivers: list[str], **options) -> RunningNginx:
    """Starts nginx in the foreground as a gRPC proxy to `receivers`; returns once it accepts connections."""
    assert NGINX is not None
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "nginx.conf"
    config.write_text(render_config(folder, port, receivers, **options))
    process = subprocess.Popen(
        [NGINX, "-p", str(folder), "-c", str(config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {process.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return RunningNginx(f"127.0.0.1:{port}", folder, process)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("nginx did not start listening within 10 s")
