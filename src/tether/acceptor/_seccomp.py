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

* ``clone`` with a namespace flag (``CLONE_NEWUSER``, ``CLONE_NEWNET``, ...: the
  same as ``unshare``), one rule per flag on its first argument; ``clone3``, whose
  flags sit in memory a filter cannot read, fails with ENOSYS instead, so the C
  library falls back to ``clone`` for threads and processes, as it does on kernels
  older than 5.3 (Docker's default profile does the same).
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

#: clone(2) flags that make a new namespace (CLONE_NEWTIME is only valid in clone3).
CLONE_NAMESPACE_FLAGS = (
    0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000,
)  # fmt: skip
_SCMP_CMP_MASKED_EQ = 7

_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000
_NR_SCMP_ERROR = -1


class _ArgCmp(ctypes.Structure):
    """libseccomp's ``struct scmp_arg_cmp``."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


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
        clone = lib.seccomp_syscall_resolve_name(b"clone")
        for flag in CLONE_NAMESPACE_FLAGS:
            # (flags & flag) == flag on the first argument: EPERM.
            cmp = _ArgCmp(0, _SCMP_CMP_MASKED_EQ, flag, flag)
            rc = lib.seccomp_rule_add_array(ctx, action, clone, 1, ctypes.byref(cmp))
            if rc < 0:
                raise SeccompUnavailable(f"libseccomp refused a rule for clone: {-rc}")
        clone3 = lib.seccomp_syscall_resolve_name(b"clone3")
        if clone3 != _NR_SCMP_ERROR:
            rc = lib.seccomp_rule_add_array(ctx, _SCMP_ACT_ERRNO | errno.ENOSYS, clone3, 0, None)
            if rc < 0:
                raise SeccompUnavailable(f"libseccomp refused a rule for clone3: {-rc}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
        finally:
            os.close(fd)
        if rc < 0:
            raise SeccompUnavailable(f"libseccomp could not export the filter: {-rc}")
    finally:
        lib.seccomp_release(ctx)
