"""Device discovery: what this host can offer to sessions.

Theory of operation
-------------------
:func:`discover` asks each vendor's own management library, one probe per
vendor, and never lets one vendor's failure hide another's devices. Each probe
returns a :class:`Probe`: its devices plus a one-line note for the operator
("no NVIDIA driver: ..."). Parsers of tool output are pure functions so they can
be tested without the hardware.

One module per job:

=================  ==========================================================
``_model``         the records: :class:`Device`, :class:`Probe`,
                   :class:`Framework`, :class:`Discovery`
``_cpu``           the host CPU, always present (``/proc``, cgroup v2)
``_nvidia``        NVIDIA GPUs and MIG instances through NVML (``pynvml``)
``_amd``           AMD GPUs through ``amdsmi``, else ``rocm-smi --json``
``_intel``         Intel XPUs through ``torch.xpu`` in a subprocess
``_frameworks``    frameworks, their builds, which devices each can drive
``_discover``      :func:`discover`: every probe together
``_select``        the ``--devices`` filter
``_host``          reading kernel files and running short probe subprocesses
=================  ==========================================================

Code outside the package imports from the package; the tests reach into the
modules for the pure parsers and helpers.
"""

from tether.acceptor._devices._discover import discover, discover_devices
from tether.acceptor._devices._frameworks import discover_frameworks, frameworks_for
from tether.acceptor._devices._model import (
    PROBE_TIMEOUT_S,
    VENDORS,
    Device,
    Discovery,
    Framework,
    Probe,
)
from tether.acceptor._devices._nvidia import mps_pipe_directory
from tether.acceptor._devices._select import DeviceFilterError, filter_devices, parse_device_filter

__all__ = [
    "PROBE_TIMEOUT_S",
    "VENDORS",
    "Device",
    "DeviceFilterError",
    "Discovery",
    "Framework",
    "Probe",
    "discover",
    "discover_devices",
    "discover_frameworks",
    "filter_devices",
    "frameworks_for",
    "mps_pipe_directory",
    "parse_device_filter",
]
