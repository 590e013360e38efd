"""The Ray cluster a sweep runs on: its settings (``sweep.*``), the checks made before anything is
written (Ray installed, ``sweep.ray_address`` answering within ``CONNECT_TIMEOUT_S``: Ray itself would
retry for minutes), and connecting to a cluster or starting one here (watched by ``orphans.reaped``, so
a SIGKILLed driver takes its cluster with it).  The Tune grid that runs the trials on it is
``ray_backend.py``.  ``import ray`` happens only inside functions: importing lorasweep never needs Ray.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lorasweep.config import StudyConfig
from lorasweep.errors import UserError

CONNECT_TIMEOUT_S = 10.0  # the TCP check of sweep.ray_address (Ray itself retries for minutes)


@dataclass(frozen=True)
class RaySettings:
    """How the sweep runs on Ray, as plain values (built from ``cfg.sweep`` by ``ray_settings``)."""

    address: str | None  # an existing cluster ("auto", "host:port", "ray://..."); None: start one here
    cpus_per_trial: float
    gpus_per_trial: float  # fractional values pack several trials onto one GPU
    threads: int  # torch threads inside each trial
    local_cpus: int  # CPUs of a cluster started here: ``workers`` trials at once, as locally

    def describe(self) -> str:
        return (
            f"Ray: {self.cpus_per_trial:g} CPU + {self.gpus_per_trial:g} GPU per trial, "
            f"{self.threads} thread(s)"
        )


def ray_settings(cfg: StudyConfig) -> RaySettings:
    s = cfg.sweep
    cpus = float(getattr(s, "cpus_per_trial", 1))
    gpus = float(getattr(s, "gpus_per_trial", 0))
    if cpus <= 0:
        raise UserError(f"must be > 0, got {cpus:g}", "sweep.cpus_per_trial")
    if gpus < 0 or (gpus > 1 and gpus != int(gpus)):
        raise UserError(f"must be >= 0, and whole above 1 (Ray's rule), got {gpus:g}", "sweep.gpus_per_trial")
    return RaySettings(
        address=getattr(s, "ray_address", None) or None,
        cpus_per_trial=cpus,
        gpus_per_trial=gpus,
        threads=s.threads_per_worker,
        local_cpus=max(1, math.ceil(s.workers * cpus)),
    )


def preflight(cfg: StudyConfig) -> None:
    """Before anything is written: Ray is installed, the sweep's Ray settings are valid and the
    cluster named by ``sweep.ray_address`` (if any) answers."""
    check_available()
    settings = ray_settings(cfg)
    if settings.address:
        check_reachable(settings.address)


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise a ``UserError`` naming ``sweep.ray_address`` unless a TCP connection to the cluster's
    address opens within ``timeout_s`` (name resolution included).  The address is resolved as Ray
    resolves it (``auto``: ``RAY_ADDRESS``, then the last ``ray start`` on this machine)."""
    target = _resolve(address)
    host_port = _host_port(target) if target else None
    if host_port is None:
        return  # nothing to check here; Ray reports what it cannot parse or find
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection(host_port, timeout=timeout_s).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if outcome == [None]:
        return
    why = outcome[0] if outcome else f"no answer within {timeout_s:g} s"
    resolved = f" = {target}" if target != address else ""
    raise UserError(
        f"cannot reach the Ray cluster at {address}{resolved} ({why}); start it (ray start --head) "
        "or fix the address",
        "sweep.ray_address",
    )


def _resolve(address: str) -> str | None:
    """The host:port Ray itself would connect to (it maps localhost to this node's address)."""
    if address.startswith("ray://"):
        return address  # Ray Client: connected as given
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address(address)
    except Exception:  # private API changed, or no cluster found for auto: ray.init reports it
        return None if address == "auto" else address


def _host_port(address: str) -> tuple[str, int] | None:
    """("host", port) of ``host:port`` or ``ray://host:port``; None for anything else."""
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def check_available() -> None:
    """Raise a ``UserError`` naming the extra when Ray (with Tune) is not installed."""
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError as e:
        raise UserError(
            f"backend ray needs Ray Tune ({e}): pip install 'lorasweep[ray]'", "sweep.backend"
        ) from None


# ---------------------------------------------------------------- on the driver


def reaped(settings: RaySettings) -> contextlib.AbstractContextManager:
    """A cluster started here is this driver's: nothing of it may outlive the driver."""
    from lorasweep.sweep import orphans

    return orphans.reaped() if settings.address is None else contextlib.nullcontext()


@contextlib.contextmanager
def cluster(settings: RaySettings, log: Callable[[str], None]) -> Iterator[None]:
    """Connect to ``settings.address``, or start a local cluster; shut down only what was started
    here (a caller's own ``ray.init`` is used as it is and left running)."""
    import ray

    if ray.is_initialized():
        yield
        return
    try:
        if settings.address:
            check_reachable(settings.address)  # also when called without preflight
            ray.init(address=settings.address)
            log(f"ray: connected to {settings.address} ({_resources(ray)})")
        else:
            ray.init(num_cpus=settings.local_cpus, include_dashboard=False)
            log(f"ray: started a local cluster ({_resources(ray)})")
    except (ConnectionError, RuntimeError, ValueError) as e:
        ray.shutdown()
        where = "sweep.ray_address" if settings.address else "sweep.backend"
        raise UserError(f"cannot start or reach the Ray cluster: {e}", where) from None
    try:
        yield
    finally:
        ray.shutdown()


def _resources(ray: Any) -> str:
    res = ray.cluster_resources()
    return f"{res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs"
