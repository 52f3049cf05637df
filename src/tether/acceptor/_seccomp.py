"""The seccomp filter of a worker's cell, compiled by libseccomp.

bubblewrap installs a seccomp program it is handed (``--seccomp FD``, after
NO_NEW_PRIVS and before the command's exec); this module only asks libseccomp
(``libseccomp2``, on every Debian system: systemd and apt need it) to compile
one, through its C API -- no hand-written BPF. The filter allows everything
except the system calls below, which fail with EPERM; system calls of another
architecture's ABI (32-bit ``int 0x80`` on x86-64) kill the process, libseccomp's
default, so the list cannot be bypassed through them.

Denied, and why a session never needs them:

* reading or steering other processes: ``ptrace``, ``process_vm_readv``,
  ``process_vm_writev``, ``kcmp``, ``pidfd_getfd``;
* new namespaces (a user namespace would give the session capabilities over
  mounts and network inside it): ``unshare``, ``setns``;
* kernel surfaces with a history of privilege escalation or side channels:
  ``bpf``, ``perf_event_open``, ``userfaultfd``, ``keyctl``, ``add_key``,
  ``request_key``, ``io_uring_setup``, ``open_by_handle_at``;
* administration (already refused without capabilities; denied twice):
  ``mount``, ``umount2``, ``pivot_root``, ``init_module``, ``finit_module``,
  ``delete_module``, ``kexec_load``, ``kexec_file_load``, ``reboot``, ``swapon``,
  ``swapoff``, ``acct``.

Not denied: ``clone`` with namespace flags (filtering its flags needs argument
comparisons this list does not make), so a cell can still make a user
namespace through ``clone``; docs/security.md lists it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

from tether._errors import TetherError

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "unshare", "setns",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "io_uring_setup", "open_by_handle_at",
    "mount", "umount2", "pivot_root", "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct",
)  # fmt: skip

_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000
_NR_SCMP_ERROR = -1


class SeccompUnavailable(TetherError):
    """libseccomp cannot be loaded or refused the filter (the message says which)."""


def compile_filter(path: Path, denied: tuple[str, ...] = DENIED) -> None:
    """Write the BPF program denying ``denied`` (EPERM) to ``path`` (mode 600).

    Names this kernel's architecture does not have are skipped. Raises
    SeccompUnavailable when libseccomp is missing or fails.
    """
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(
            f"libseccomp not found ({exc}): apt-get install libseccomp2"
        ) from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    # The array form: seccomp_rule_add itself is variadic, which ctypes cannot call portably.
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p
    ]  # fmt: skip
    lib.seccomp_export_bpf.restype = ctypes.c_int
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(_SCMP_ACT_ALLOW)
    if not ctx:
        raise SeccompUnavailable("seccomp_init failed")
    try:
        action = _SCMP_ACT_ERRNO | errno.EPERM
        for syscall in denied:
            nr = lib.seccomp_syscall_resolve_name(syscall.encode())
            if nr == _NR_SCMP_ERROR:
                continue  # not on this architecture
            rc = lib.seccomp_rule_add_array(ctx, action, nr, 0, None)
            if rc < 0:
                raise SeccompUnavailable(f"libseccomp refused a rule for {syscall}: {-rc}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
        finally:
            os.close(fd)
        if rc < 0:
            raise SeccompUnavailable(f"libseccomp could not export the filter: {-rc}")
    finally:
        lib.seccomp_release(ctx)
