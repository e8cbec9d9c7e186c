"""A reference peer running in a process of its own, with the interface bench/run.py expects of a
server (`ws`, `process`, `start`, `terminate`, `kill`)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class PeerProcess:
    module = ""  # run as `python -m <module> --port N <options>`
    scheme = "ws"
    settle_seconds = 0.3  # after the port answers, before load starts

    def __init__(self, name: str, options: list[str]) -> None:
        from tests.support.cluster import free_port

        self.name = name
        self.options = options
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = Path(tempfile.gettempdir()) / f"rpgrt-{self.module.rpartition('.')[2]}-{name}-{self.port}.log"

    @property
    def ws(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> PeerProcess:
        from tests.support.cluster import wait_for_port

        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, "--port", str(self.port), *self.options],
            cwd=ROOT,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)
        time.sleep(self.settle_seconds)
        return self

    def terminate(self, timeout: float = 15) -> int:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            return self.process.wait(timeout)
        return 0

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
