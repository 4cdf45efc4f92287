"""Devices, machine description and the per-device JSON files of the suite.

Every record the suite writes carries the fields of :func:`machine_fields`
(platform, device kind, CPU model, versions, ...), so that records from
different machines can be merged into one table without losing where they
were measured.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import platform as py_platform
import re
from typing import Any, Dict, List, Optional, Sequence

import jax

import search_throughput  # benchmarks/ is on sys.path (run_suite.py puts it there)

SCHEMA = 1
FILE_PREFIX = "suite_"

#: Fields every record carries (checked by the smoke test).
MACHINE_FIELDS = ("platform", "device", "device_name", "cpu_model", "cpu_count",
                  "host", "versions")
VERSION_KEYS = ("python", "jax", "jaxlib", "mctx", "flax", "mctx_planner")


def now() -> str:
    """UTC time stamp, seconds."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def cpu_count() -> int:
    """CPU cores this process may run on (affinity), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def find_devices(platforms: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``{platform: first device}`` for the requested or all present platforms.

    By default: JAX's default backend (``gpu`` / ``tpu`` when one is present)
    first, then ``cpu`` -- the pattern of ``search_throughput.py``. Platforms
    that JAX cannot open are reported and left out.
    """
    if not platforms:
        platforms = sorted({"cpu", jax.default_backend()},
                           key=lambda p: (p == "cpu", p))
    devices = {}
    for plat in platforms:
        try:
            devices[plat] = jax.devices(plat)[0]
        except RuntimeError as e:
            print("platform %r unavailable: %s" % (plat, str(e).splitlines()[0]),
                  flush=True)
    return devices


def slug(text: str) -> str:
    """``"NVIDIA H200"`` -> ``"nvidia-h200"``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def device_slug(device) -> str:
    """File-name tag of a device: its kind, or for CPUs the CPU model and cores.

    A CPU's ``device_kind`` is just ``"cpu"``; the model and core count keep
    the CPU results of different machines (e.g. a GPU host's) apart.
    """
    if device.platform == "cpu":
        return "%s-%dcores" % (slug(search_throughput.cpu_model() or "cpu"),
                               cpu_count())
    return slug(getattr(device, "device_kind", None) or str(device))


def device_file(out_dir: str, device) -> str:
    """``<out_dir>/suite_<platform>_<device-slug>.json``."""
    return os.path.join(out_dir, "%s%s_%s.json" % (FILE_PREFIX, device.platform,
                                                   device_slug(device)))


def machine_fields(device) -> Dict[str, Any]:
    """Where a record was measured: device, CPU model, host and versions."""
    return dict(
        platform=device.platform,
        device=getattr(device, "device_kind", None) or str(device),
        device_name=search_throughput.device_name(device),
        device_slug=device_slug(device),
        cpu_model=search_throughput.cpu_model(),
        cpu_count=cpu_count(),
        host=py_platform.node(),
        versions=search_throughput.versions())


def load_average() -> Optional[float]:
    """1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def device_peak_bytes(device) -> Optional[int]:
    """``device.memory_stats()['peak_bytes_in_use']`` where the runtime has it.

    GPU/TPU runtimes report it; it is the process's high-water mark so far,
    not the peak of the last computation. CPU returns None.
    """
    try:
        stats = device.memory_stats()
    except Exception:  # pylint: disable=broad-except
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return int(stats["peak_bytes_in_use"])


def read_file(path: str) -> Dict[str, Any]:
    """A suite JSON file (``{"meta": ..., "records": [...]}``)."""
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or "records" not in data:
        raise ValueError("%s is not a suite result file" % path)
    return data


def write_file(path: str, meta: Dict[str, Any], records: List[Dict[str, Any]]) -> None:
    """Writes atomically (temporary file + rename), so a killed run keeps the
    previous complete file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(dict(schema=SCHEMA, meta=meta, records=records), f, indent=1,
                  default=float)
    os.replace(tmp, path)


def write_ab_rows(path: Optional[str], rows: List[Dict[str, Any]],
                  **extra: Any) -> None:
    """The rows of an A/B script as JSON, with the device, JAX version and
    CPU count (nothing without a ``path``). Rewritten after every cell, so
    that a stopped run keeps its rows."""
    if path:
        with open(path, "w") as f:
            json.dump(dict(device=jax.devices()[0].device_kind, jax=jax.__version__,
                           cpus=cpu_count(), **extra, rows=rows), f, indent=1)


def result_files(out_dir: str) -> List[str]:
    """Every ``suite_*.json`` in ``out_dir``, sorted."""
    return sorted(glob.glob(os.path.join(out_dir, FILE_PREFIX + "*.json")))


def record_key(record: Dict[str, Any]) -> tuple:
    """Identity of a measurement within one device file."""
    if record.get("kind") == "search":
        return ("search", record["policy"], record["backend"], record["hidden"],
                record["actions"], record["batch"], record["sims"])
    return ("train", record["preset"])
