"""Start app.py in a subprocess on a free loopback port, for the app and browser tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from engine.settings import DATA_DIR as DATA  # noqa: E402  (TWIN_DATA, or ../shared/data)
LFW = DATA / "lfw"
EXAMPLES = ROOT / "demo" / "examples"
ARTIFACTS = ROOT / "test-artifacts"
READY = "twin: ready at "


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lfw(name: str, number: int) -> Path:
    return LFW / name / f"{name}_{number:04d}.jpg"


class AppServer:
    """`python app.py` serving a fresh gallery; `url` once it is ready; `stop()` ends it."""

    def __init__(self, tmp: Path, *extra: str, timeout: float = 300.0, port: int | None = None,
                 temp_dir: Path | None = None, root: Path = ROOT):
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.gallery = self.tmp / "gallery"
        self.log_path = self.tmp / "app.log"
        self.port = port or free_port()
        temp_dir = temp_dir or self.tmp / "gradio-tmp"
        env = {**os.environ, "GRADIO_TEMP_DIR": str(temp_dir), "PYTHONUNBUFFERED": "1"}
        env.pop("GRADIO_SERVER_NAME", None)
        env.pop("GRADIO_SERVER_PORT", None)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(root) / "app.py"), "--host", "127.0.0.1", "--port", str(self.port),
             "--gallery", str(self.gallery), *extra],
            cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.url = self._wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                if line.startswith(READY):
                    return line[len(READY):].strip()
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"app.py was not ready after {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self._log.close()
