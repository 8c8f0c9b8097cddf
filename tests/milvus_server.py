"""A real Milvus standalone server for the tests and benches, from the PyPI package `milvus`
(2.3.5: the server binary with embedded etcd and local storage, no container).

Ports: the proxy port (what clients use) stays the same across restarts; every internal port
(the coordinators', the nodes', embedded etcd's) is drawn afresh at each start. Measured
here: after kill -9, a 2.3.5 standalone restarted on the same internal ports kept calling
its dead predecessor's sessions at those addresses ("node not match") and was not serving
after 200 s; on fresh ports it served in about 8 s.

`MilvusServerProcess(base_dir)` starts it on a free loopback port and keeps that port and its
data directory across `stop()` / `kill()` / `start()`, so a client (or an app) pointed at
`milvus://127.0.0.1:PORT/...` meets the same server again after a restart. The session
fixture `milvus_server` (tests/conftest.py) starts one for the whole test session.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config():
    """The package's config, whose port check binds the way the server does (SO_REUSEADDR):
    after kill -9 the proxy port has connections in TIME_WAIT, which the server ignores but a
    plain bind does not."""
    from milvus import MilvusServerConfig

    class Config(MilvusServerConfig):
        def try_bind_port(self, port):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen()
                return sock
            except OSError:
                sock.close()
                return None

    return Config()


class MilvusServerProcess:
    """One Milvus standalone server in `base_dir`; `url` is where a gallery location points."""

    def __init__(self, base_dir: Path, port: int | None = None):
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.etcd_ports = (0, 0)
        self.server = None
        self.start_seconds = 0.0

    @property
    def url(self) -> str:
        return f"milvus://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        proc = getattr(self.server, "server_proc", None)
        return proc.pid if proc is not None else None

    def start(self, timeout_s: float = 300.0) -> float:
        """Start (or restart) the server; returns the seconds until it answered gRPC."""
        from milvus import MilvusServer

        started = time.monotonic()
        self.server = MilvusServer(_config(), wait_for_started=False)
        self.server.set_base_dir(str(self.base_dir))
        self.server.config.update(proxy_port=self.port)  # this port or an error, never the next free one
        self.etcd_ports = (free_port(), free_port())
        for key in self.server.config_keys:  # every port but the one clients use: fresh (see below)
            if key.endswith("_port") and key != "proxy_port":
                self.server.config.set(key, self.etcd_ports[0] if key == "etcd_port" else free_port())
        cwd, before = os.getcwd(), os.environ.get("ETCD_CONFIG_PATH")
        os.environ["ETCD_CONFIG_PATH"] = str(self._etcd_config())  # (Milvus reads its settings from the environment too)
        try:
            self.server.start()  # (it changes the working directory while it spawns the binary)
        finally:
            os.chdir(cwd)
            if before is None:
                os.environ.pop("ETCD_CONFIG_PATH", None)
            else:
                os.environ["ETCD_CONFIG_PATH"] = before
        try:
            self._wait_for_grpc(started + timeout_s)
        except BaseException:
            self.kill()
            raise
        self.start_seconds = time.monotonic() - started
        return self.start_seconds

    def _etcd_config(self) -> Path:
        """The embedded etcd on ports of its own: its defaults (2379, 2380) would collide with
        any other Milvus server on this machine (a developer's `make milvus-server`)."""
        client, peer = self.etcd_ports
        path = self.base_dir / "embed-etcd.yaml"
        path.write_text(
            f"listen-client-urls: http://127.0.0.1:{client}\n"
            f"advertise-client-urls: http://127.0.0.1:{client}\n"
            f"listen-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-cluster: default=http://127.0.0.1:{peer}\n"
        )
        return path

    def _wait_for_grpc(self, deadline: float) -> None:
        from pymilvus import MilvusClient

        last: Exception | None = None
        while time.monotonic() < deadline:
            proc = getattr(self.server, "server_proc", None)
            if proc is None or proc.poll() is not None:
                raise RuntimeError(f"the Milvus server exited while starting:\n{self.log_tail()}")
            try:
                client = MilvusClient(uri=f"http://127.0.0.1:{self.port}", timeout=5)
                try:
                    client.list_collections(timeout=5)
                    return
                finally:
                    client.close()
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = exc
                time.sleep(0.5)
        raise TimeoutError(f"Milvus on port {self.port} did not answer gRPC: {last}\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        found = []
        for name in ("milvus-stderr.log", "milvus-stdout.log"):
            path = self.base_dir / "logs" / name
            if path.is_file():
                found += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(found)

    def stop(self, timeout_s: float = 60.0) -> None:
        """A clean shutdown (SIGTERM, then SIGKILL after timeout_s)."""
        proc = getattr(self.server, "server_proc", None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        self._forget()

    def kill(self) -> None:
        """kill -9: no shutdown at all."""
        proc = getattr(self.server, "server_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(30)
        self._forget()

    def _forget(self) -> None:
        if self.server is not None:
            for fd in self.server.proc_fds.values():
                fd.close()
            self.server.proc_fds.clear()
            self.server.server_proc = None
        self.server = None

    def memory_mb(self) -> float:
        """Resident memory of the server process (VmRSS), in MB."""
        pid = self.pid
        if pid is None:
            return 0.0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def drop_collections(self, aliases: set[str]) -> None:
        """Drop these gallery aliases and every collection under them (a test's leftovers)."""
        if not aliases or self.server is None:
            return
        from pymilvus import MilvusClient

        client = MilvusClient(uri=f"http://127.0.0.1:{self.port}", timeout=30)
        try:
            for alias in aliases:
                try:
                    client.drop_alias(alias)
                except Exception:  # noqa: BLE001 - not there
                    pass
            for name in client.list_collections():
                if any(name.startswith(alias + "_") for alias in aliases):
                    client.drop_collection(name)
        finally:
            client.close()


def session_server(base_dir: Path) -> MilvusServerProcess:
    """Start the session's server; under TWIN_CI=1 a server that cannot start fails the tests
    that need it, elsewhere it skips them (the `milvus` package is a dev requirement)."""
    import pytest

    try:
        import milvus  # noqa: F401
    except ImportError as exc:
        message = f"the `milvus` package (requirements-dev.txt) is not installed: {exc}"
        if os.environ.get("TWIN_CI") == "1":
            pytest.fail(message)
        pytest.skip(message)
    server = MilvusServerProcess(base_dir)
    try:
        server.start()
    except Exception as exc:
        server.kill()
        message = f"the Milvus server did not start: {exc}"
        if os.environ.get("TWIN_CI") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return server


def main() -> int:
    """`make milvus-server`: a local Milvus server for development, until Ctrl+C."""
    import argparse

    p = argparse.ArgumentParser(description="A local Milvus 2.3.5 standalone server (the `milvus` package).")
    p.add_argument("--data", type=Path, default=Path("data/milvus-server"), help="its data directory (kept)")
    p.add_argument("--port", type=int, default=19530, help="the gRPC port clients use")
    args = p.parse_args()
    server = MilvusServerProcess(args.data.resolve(), args.port)
    print(f"Starting Milvus in {server.base_dir} (logs in {server.base_dir / 'logs'}) ...", flush=True)
    seconds = server.start()
    print(f"Milvus serves {server.url} ({seconds:.0f} s to start). Try:\n"
          f"  make run GALLERY={server.url}/twin_gallery\nCtrl+C stops it.", flush=True)
    try:
        while server.server is not None and server.server.server_proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(timeout_s=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
