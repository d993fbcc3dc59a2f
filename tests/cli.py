"""Running the real ``pyimg`` command in tests, with a private store."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PYIMG = str(Path(sys.executable).with_name("pyimg"))


@dataclass
class Pyimg:
    """A pyimg installation for one test: its root, config dir and docker config."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = self.home / "root"
        self.config = self.home / "config"
        self.docker_config = self.home / "docker"
        self.config.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "PYIMG_ROOT": str(self.root), "PYIMG_CONFIG": str(self.config),
                    "DOCKER_CONFIG": str(self.docker_config), "PYIMG_RETRY_BASE": "0.01",
                    **self.env}

    def cmd(self, *args: str) -> list[str]:
        return [PYIMG, *args]

    def run(self, *args: str, check: bool = True, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.cmd(*args), env=self.env, capture_output=True, text=True,
                              input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"pyimg {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.cmd(*args), env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def images(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = json.loads(self.run("images", "--format", "json").stdout)
        return out

    def blobs(self) -> dict[str, int]:
        """hex -> size of every visible blob, each re-hashed (fails if one is wrong)."""
        out = {}
        blob_dir = self.root / "content" / "blobs" / "sha256"
        for path in sorted(blob_dir.iterdir()) if blob_dir.is_dir() else []:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            assert h.hexdigest() == path.name, f"blob {path.name} does not match its digest"
            out[path.name] = path.stat().st_size
        return out


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserts there is only one)."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pyimg: error: "), lines[0]
    return lines[0]
