"""The launcher ↔ init sync channel: typed JSON lines."""

from __future__ import annotations

import os
import socket

import pytest

from pyimg.runtime.sync import Channel, ProtocolError, socketpair


def test_roundtrip_and_partial_lines() -> None:
    ch, child = socketpair()
    peer = Channel(child)
    try:
        assert os.get_inheritable(child.fileno())
        ch.send("config", spec={"a": [1, 2]}, mode="create")
        peer.send("pid", pid=42)
        assert peer.recv() == {"type": "config", "spec": {"a": [1, 2]}, "mode": "create"}
        assert ch.expect("pid") == {"type": "pid", "pid": 42}
        child.sendall(b'{"type": "rea')
        child.sendall(b'dy"}\n{"type": "error", "stage": "exec"}\n')
        assert ch.recv()["type"] == "ready"
        assert ch.expect("ready")["stage"] == "exec"  # an error is always accepted
    finally:
        ch.close()
        peer.close()


def test_eof_garbage_and_unexpected() -> None:
    a, b = socket.socketpair()
    ch = Channel(a)
    try:
        b.sendall(b'{"type": "pid"}\n[1]\nnot json\n{"type": "x"')
        with pytest.raises(ProtocolError, match="expected 'ready'"):
            ch.expect("ready")
        with pytest.raises(ProtocolError, match="no type"):
            ch.recv()
        with pytest.raises(ProtocolError, match="malformed"):
            ch.recv()
        b.close()
        with pytest.raises(ProtocolError, match="mid-message"):
            ch.recv()
    finally:
        ch.close()


def test_clean_eof() -> None:
    a, b = socket.socketpair()
    ch = Channel(a)
    b.close()
    try:
        assert ch.recv_or_eof() is None
        with pytest.raises(ProtocolError, match="closed"):
            ch.recv()
    finally:
        ch.close()
