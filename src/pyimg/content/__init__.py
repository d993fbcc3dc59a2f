"""The content store: verified blobs addressed by digest.

Contract (containerd's ``content.Store``, reduced to what pyimg needs)::

    store = LocalStore(root / "content")
    if not store.exists(desc.digest):
        with store.writer(str(desc.digest), desc) as w:   # flock: one writer per ref,
            for chunk in fetch(desc, offset=w.offset):     # across processes
                w.write(chunk)                             # resumes from w.offset
            w.commit()       # fsync, verify size+digest, atomic rename; always closes

A blob becomes visible under ``blobs/sha256/<hex>`` only after it verified.
Leaving the ``with`` block without ``commit()`` keeps the ingest so that the
next writer for the same ref resumes where this one stopped.
``writer()`` raises :class:`~pyimg.errors.AlreadyExists` when the blob is
already present (possibly committed by another process while we waited for
the lock): callers treat that as success.
"""

from __future__ import annotations

from pyimg.content.local import BlobInfo, LocalStore, Writer

__all__ = ["BlobInfo", "LocalStore", "Writer"]
