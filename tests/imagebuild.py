"""Build OCI layouts from raw tar bytes, for tests that need odd or hostile layers."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path

from fixtures.registry.build import host_arch


def _blob(root: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    path = root / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def layout_from_tars(root: Path, tars: Sequence[bytes], *, tag: str = "latest",
                     cmd: Sequence[str] = ("sh",),
                     diff_ids: Sequence[str] | None = None) -> Path:
    """An OCI layout at ``root`` with one gzip layer per tar (in order)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    layers = []
    for tar in tars:
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       **_blob(root, gzip.compress(tar, mtime=0))})
    config = {"architecture": host_arch(), "os": "linux",
              "config": {"Cmd": list(cmd), "Env": ["PATH=/bin:/usr/bin"]},
              "rootfs": {"type": "layers", "diff_ids": list(diff_ids) if diff_ids else
                         [f"sha256:{hashlib.sha256(t).hexdigest()}" for t in tars]}}
    cfg = {"mediaType": "application/vnd.oci.image.config.v1+json",
           **_blob(root, json.dumps(config).encode())}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cfg, "layers": layers}
    man = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
           **_blob(root, json.dumps(manifest).encode()),
           "annotations": {"org.opencontainers.image.ref.name": tag}}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [man]}))
    return root


def tar_of(entries: Sequence[tuple[str, str, bytes | str]]) -> bytes:
    """A tar from (name, kind, data|target) with kind file/dir/symlink/hardlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if kind == "file":
                raw = data.encode() if isinstance(data, str) else data
                info.size = len(raw)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(raw))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
            tar.addfile(info)
    return buf.getvalue()
