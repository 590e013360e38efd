"""An unreachable ``sweep.ray_address`` fails at once with a message naming the key (Ray itself would
retry for minutes).  No Ray needed: the check is a plain TCP connection made before ``ray.init``."""

from __future__ import annotations

import socket
import time

import pytest

from lorasweep.errors import UserError
from lorasweep.sweep import ray_cluster


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.5:6379", ("10.0.0.5", 6379)),
        ("ray://head.example:10001", ("head.example", 10001)),
        ("[::1]:6379", ("::1", 6379)),
        ("head-node", None),
        ("host:port", None),
    ],
)
def test_host_port(address, expected):
    assert ray_cluster._host_port(address) == expected


def test_refused_address_fails_at_once_naming_the_key():
    address = f"127.0.0.1:{closed_port()}"
    t0 = time.monotonic()
    # with Ray installed, localhost is shown as the node address Ray would use too
    with pytest.raises(
        UserError, match=rf"^sweep.ray_address: cannot reach the Ray cluster at {address}( = \S+)? \("
    ):
        ray_cluster.check_reachable(address)
    assert time.monotonic() - t0 < 5


def test_silent_address_fails_after_the_timeout(monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(3)
        raise OSError("never answered")

    monkeypatch.setattr(socket, "create_connection", hang)
    t0 = time.monotonic()
    with pytest.raises(UserError, match=r"no answer within 0.5 s"):
        ray_cluster.check_reachable("10.255.255.1:6379", timeout_s=0.5)
    assert time.monotonic() - t0 < 2


def test_listening_address_passes():
    with socket.socket() as server:
        server.bind(("", 0))  # every interface, as Ray's GCS: Ray maps localhost to the node's address
        server.listen(1)
        ray_cluster.check_reachable(f"127.0.0.1:{server.getsockname()[1]}")
