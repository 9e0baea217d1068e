"""Confinement of one analysis run: no new privileges, then a Landlock domain.

An analysis child calls ``Confinement.prepare`` while it waits for its run
(off the request's path: the ruleset with every rule that does not depend on
the run), then ``Confinement.enter`` as soon as it knows its run, before it
reads the run's files or imports the script. From then on the child and
every process it starts:

- gain no privileges through ``execve`` (``PR_SET_NO_NEW_PRIVS``, prctl(2));
- read and execute only the Python installation (prefixes, ``sys.path``),
  the system's libraries and programs (``/usr``), a few named files of
  ``/etc`` (the loader's cache, time zone, name service), ``/proc``, a few
  devices (``/dev/null``, ``/dev/urandom``, ...); read the run's folder and
  the script's folder (or the named analysis's package); write only the run's
  scratch folder (``TMPDIR``) and ``/dev/shm`` (POSIX semaphores and shared
  memory, which ``multiprocessing`` needs);
- bind and connect no TCP socket (Landlock ABI 4, unless ``network``);
- signal no process, and connect to no abstract unix socket, outside their
  own Landlock domain (ABI 6): not the zygote, not another run, not the host.

Landlock is a stackable Linux security module for unprivileged sandboxing
(Linux 5.13+). The three system calls are bound here with ctypes; the
structures, flags and ABI versions are those of ``include/uapi/linux/landlock.h``
and https://docs.kernel.org/userspace-api/landlock.html (see also landlock(7),
landlock_create_ruleset(2), landlock_add_rule(2), landlock_restrict_self(2)).
What each ABI adds: 1 (5.13) files; 2 (5.19) ``REFER``, moving or linking a
file into another folder; 3 (6.2) ``TRUNCATE``; 4 (6.7) TCP bind and connect;
5 (6.10) ``IOCTL_DEV``; 6 (6.12) scoping of signals and abstract unix
sockets; 7 (6.15) audit-logging flags (not used: the defaults are kept).
"""

from __future__ import annotations

import ctypes
import enum
import errno
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["best-effort", "require", "off"]

# System call numbers: the same on every architecture (added after the
# syscall tables were unified, include/uapi/asm-generic/unistd.h).
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38


class FS(enum.IntFlag):
    """``LANDLOCK_ACCESS_FS_*``."""

    EXECUTE = 1 << 0
    WRITE_FILE = 1 << 1
    READ_FILE = 1 << 2
    READ_DIR = 1 << 3
    REMOVE_DIR = 1 << 4
    REMOVE_FILE = 1 << 5
    MAKE_CHAR = 1 << 6
    MAKE_DIR = 1 << 7
    MAKE_REG = 1 << 8
    MAKE_SOCK = 1 << 9
    MAKE_FIFO = 1 << 10
    MAKE_BLOCK = 1 << 11
    MAKE_SYM = 1 << 12
    REFER = 1 << 13  # ABI 2
    TRUNCATE = 1 << 14  # ABI 3
    IOCTL_DEV = 1 << 15  # ABI 5


class Net(enum.IntFlag):
    """``LANDLOCK_ACCESS_NET_*`` (ABI 4)."""

    BIND_TCP = 1 << 0
    CONNECT_TCP = 1 << 1


class Scope(enum.IntFlag):
    """``LANDLOCK_SCOPE_*`` (ABI 6)."""

    ABSTRACT_UNIX_SOCKET = 1 << 0
    SIGNAL = 1 << 1


FILE_RIGHTS = FS.EXECUTE | FS.WRITE_FILE | FS.READ_FILE | FS.TRUNCATE | FS.IOCTL_DEV
"""The rights a rule on a file (not a folder) may hold; others are EINVAL."""
READ = FS.READ_FILE | FS.READ_DIR
READ_EXEC = READ | FS.EXECUTE
DEVICE = FS.READ_FILE | FS.WRITE_FILE | FS.TRUNCATE  # "w" opens with O_TRUNC
SHM = READ | FS.WRITE_FILE | FS.TRUNCATE | FS.MAKE_REG | FS.REMOVE_FILE


def fs_rights(abi: int) -> FS:
    """The file system rights ABI ``abi`` handles (0: none)."""
    if abi < 1:
        return FS(0)
    rights = FS((1 << 13) - 1)
    if abi >= 2:
        rights |= FS.REFER
    if abi >= 3:
        rights |= FS.TRUNCATE
    if abi >= 5:
        rights |= FS.IOCTL_DEV
    return rights


@dataclass(frozen=True)
class Feature:
    """One thing the confinement enforces from Landlock ABI ``abi`` on;
    ``without`` says what a script can do on an older kernel."""

    name: str
    abi: int
    what: str
    without: str


FEATURES = (
    Feature(
        "files", 1, "files: read the Python installation, the script's folder and the run; write only the scratch folder",
        "a script can read and write every file the host's user can",
    ),
    Feature(
        "refer", 2, "moving and linking files between folders within the allowed ones",
        "renaming or linking a file into another folder fails even inside the scratch folder (stricter, not a gap)",
    ),
    Feature(
        "truncate", 3, "truncating only files of the scratch folder",
        "a script can truncate (empty) any file the host's user can write, with truncate(2)",
    ),
    Feature(
        "network", 4, "no TCP bind or connect",
        "a script can connect over TCP (to the host's own endpoint too) and listen",
    ),
    Feature("ioctl", 5, "no ioctl on devices", "a script can ioctl the few devices it may open (/dev/null, ...)"),
    Feature(
        "scope", 6, "no signals to, or abstract unix sockets of, processes outside the run",
        "a script can signal (stop, kill) the zygote, other runs and the host, and reach their abstract unix sockets",
    ),
)
LANDLOCK_KERNEL = {1: "5.13", 2: "5.19", 3: "6.2", 4: "6.7", 5: "6.10", 6: "6.12", 7: "6.15"}
"""The Linux version that brought each Landlock ABI."""

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall  # looked up once: a first lookup in a fresh fork costs ~0.1 ms
_syscall.restype = ctypes.c_long
_prctl = _libc.prctl


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),  # ABI 4
        ("scoped", ctypes.c_uint64),  # ABI 6
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the uapi header
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class SandboxError(OSError):
    """A Landlock or prctl call failed; the message names which and why."""


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise SandboxError(err, f"{what}: {os.strerror(err)}")
    return result


def abi_version() -> int:
    """The Landlock ABI this kernel offers; 0 if it has none (older than
    5.13, built without it, or not in the ``lsm=`` list at boot)."""
    result = _syscall(ctypes.c_long(_SYS_CREATE_RULESET), None, ctypes.c_size_t(0),
                           ctypes.c_uint32(_CREATE_RULESET_VERSION))
    if result < 0:
        return 0  # ENOSYS: not built in; EOPNOTSUPP: not enabled
    return int(result)


@dataclass(frozen=True)
class Support:
    """What the confinement enforces on a kernel offering Landlock ABI
    ``abi``, for a task's ``mode`` and ``network`` setting."""

    mode: Mode
    network: bool
    abi: int

    @property
    def enforced(self) -> list[Feature]:
        if self.mode == "off":
            return []
        return [f for f in FEATURES if f.abi <= self.abi and not (f.name == "network" and self.network)]

    @property
    def missing(self) -> list[Feature]:
        """The features the kernel lacks (a task with ``network = true`` asks
        for no network rule, so none is missing)."""
        if self.mode == "off":
            return []
        return [f for f in FEATURES if f.abi > self.abi and not (f.name == "network" and self.network)]

    def describe(self) -> list[str]:
        """Lines for ``bridgehost check`` and the start-up log: what is
        enforced, what is not and why."""
        if self.mode == "off":
            return ["sandbox off: scripts run with every right of the host's user (sandbox = \"off\")"]
        kernel = os.uname().release
        if self.abi == 0:
            head = f"no Landlock on this kernel (Linux {kernel}; Landlock needs 5.13+ with 'landlock' in lsm=)"
        else:
            head = f"Landlock ABI {self.abi} (Linux {kernel}); no new privileges"
        lines = [f"sandbox {self.mode}: {head}"]
        lines += [f"  enforced: {f.what}" for f in self.enforced]
        if self.network:
            lines.append("  not enforced: TCP (network = true)")
        lines += [
            f"  NOT enforced: {f.what}: needs Landlock ABI {f.abi} (Linux {LANDLOCK_KERNEL[f.abi]}); {f.without}"
            for f in self.missing
        ]
        return lines

    def warning(self) -> str | None:
        """One sentence naming what is not enforced and why, or None."""
        if not self.missing:
            return None
        names = ", ".join(f.name for f in self.missing)
        return (
            f"sandbox best-effort: this kernel (Linux {os.uname().release}, Landlock ABI {self.abi or 'none'}) "
            f"does not enforce: {names}; " + "; ".join(f"{f.name}: {f.without}" for f in self.missing)
        )


def support(mode: Mode, network: bool = False) -> Support:
    return Support(mode, network, abi_version())


def system_roots() -> Iterator[tuple[str, FS]]:
    """What every run may read (and execute): the interpreter, its
    libraries and the system's (the dynamic loader's needs), and the few
    files and devices a Python process opens by itself."""
    python = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              os.path.dirname(os.path.realpath(sys.executable))}
    python.update(p for p in sys.path if p)  # site-packages, and source folders of editable installs
    for path in sorted(python):
        if os.path.realpath(path) != "/":  # never the whole file system
            yield path, READ_EXEC
    for path in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"):
        yield path, READ_EXEC
    for path in (
        "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/timezone",
        "/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/hosts", "/etc/host.conf", "/etc/resolv.conf",
        "/etc/gai.conf", "/etc/services", "/etc/protocols", "/etc/mime.types", "/etc/ssl/certs",
        "/etc/ca-certificates", "/etc/pki/tls/certs", "/etc/pki/ca-trust", "/etc/os-release", "/etc/matplotlibrc", "/etc/fonts",
    ):
        yield path, READ
    yield "/proc", READ  # /proc/self/...; another process's memory and environ stay closed (ptrace check)
    yield "/sys/devices/system/cpu", READ  # CPU counts and caches (os.cpu_count, OpenBLAS)
    for path in ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"):
        yield path, DEVICE
    yield "/dev/shm", SHM


def _without_nested(rules: list[tuple[str, FS]]) -> list[tuple[str, FS]]:
    """``rules`` with real paths, less those a rule on a folder above
    already grants (``/usr/lib`` under ``/usr``): each rule costs every
    child a system call."""
    kept: list[tuple[str, FS]] = []
    for path, rights in sorted((os.path.realpath(p), r) for p, r in rules):
        if any(path.startswith(top.rstrip("/") + "/") and rights & ~granted == 0 for top, granted in kept):
            continue
        kept.append((path, rights))
    return kept


@dataclass
class Confinement:
    """The confinement of one run, in steps (see the module doc): ``open``
    (in the zygote, once: the folders every run may use, opened as
    ``O_PATH`` descriptors each child inherits), ``prepare`` (in the waiting
    child) and ``enter`` (once the child knows its run).

    ``mode``: ``off`` does nothing; ``best-effort`` enforces what the kernel
    offers; ``require``: ``prepare`` raises ``SandboxError`` if the kernel
    has no Landlock (the task refuses to start on a kernel that lacks a
    feature, so that is the only case left). ``read`` / ``write``: extra
    absolute folders the task allows to every run.
    """

    mode: Mode = "best-effort"
    network: bool = False
    read: list[str] = field(default_factory=list)
    write: list[str] = field(default_factory=list)
    abi: int = 0
    ruleset_fd: int = -1
    roots: list[tuple[int, FS]] | None = None
    """Descriptors of the folders and files every run may use, and their rights."""
    skipped: list[str] = field(default_factory=list)
    """Rules not added (their path is missing, or the kernel refused one)."""
    rules: list[tuple[_PathBeneathAttr, int]] = field(default_factory=list)
    """The rule of each of ``roots`` (with its descriptor), built by ``open``."""
    attr: _RulesetAttr | None = None
    """The ruleset's attributes, built by ``open``: flag arithmetic on enums
    and new ctypes objects in each fresh fork cost ~0.8 ms and some 120
    page copies (measured), once in the zygote they cost nothing per run."""

    def open(self) -> None:
        """Open what every run may use (``system_roots``, ``read``,
        ``write``), so each child only adds rules. Idempotent."""
        if self.mode == "off" or self.roots is not None:
            return
        self.abi = abi_version()
        every = fs_rights(self.abi)
        self.attr = _RulesetAttr(
            handled_access_fs=every,
            handled_access_net=(Net.BIND_TCP | Net.CONNECT_TCP) if self.abi >= 4 and not self.network else 0,
            scoped=(Scope.ABSTRACT_UNIX_SOCKET | Scope.SIGNAL) if self.abi >= 6 else 0,
        )
        self.roots = []
        wanted = [*system_roots(), *((p, READ_EXEC) for p in self.read), *((p, every) for p in self.write)]
        for path, rights in _without_nested(wanted):
            opened = self._open(path, rights)
            if opened is not None:
                self.roots.append(opened)
        self.rules = [(_PathBeneathAttr(allowed_access=rights, parent_fd=fd), fd) for fd, rights in self.roots]

    def _open(self, path: str, rights: FS) -> tuple[int, FS] | None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError as e:
            self.skipped.append(f"{path}: {e.strerror}")
            return None
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= FILE_RIGHTS
        return fd, rights & FS(self.attr.handled_access_fs if self.attr is not None else 0)

    def prepare(self, scratch: str) -> None:
        """While waiting for a run: no new privileges from here on, and a
        ruleset with every rule that does not depend on the run, ``scratch``
        read-write. Raises ``SandboxError`` (``require``: if the kernel has
        no Landlock)."""
        if self.mode == "off":
            return
        _check(_prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        self.open()
        if self.abi == 0:
            if self.mode == "require":
                raise SandboxError(errno.EOPNOTSUPP, "Landlock is not available on this kernel")
            return
        attr = self.attr
        assert attr is not None  # made by open()
        self.ruleset_fd = _check(
            _syscall(ctypes.c_long(_SYS_CREATE_RULESET), ctypes.byref(attr),
                     ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0)),
            "landlock_create_ruleset",
        )
        os.set_inheritable(self.ruleset_fd, False)
        ruleset, add_rule = ctypes.c_int(self.ruleset_fd), ctypes.c_long(_SYS_ADD_RULE)
        path_beneath, no_flags = ctypes.c_int(_RULE_PATH_BENEATH), ctypes.c_uint32(0)
        for rule, fd in self.rules:
            if _syscall(add_rule, ruleset, path_beneath, ctypes.byref(rule), no_flags) < 0:
                self.skipped.append(f"{fd}: {os.strerror(ctypes.get_errno())}")
        self.allow(scratch, FS(attr.handled_access_fs))
        self.close_roots()  # the ruleset holds what it needs; the script gets no descriptor of ours

    def allow(self, path: str, rights: FS) -> None:
        """Add a rule: ``rights`` beneath ``path`` (a folder), or on it (a
        file: only file rights). A missing path is skipped."""
        if self.ruleset_fd < 0:
            return
        opened = self._open(path, rights)
        if opened is not None:
            try:
                self._add(*opened, path)
            finally:
                os.close(opened[0])

    def _add(self, fd: int, rights: FS, what: object) -> None:
        rule = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
        result = _syscall(ctypes.c_long(_SYS_ADD_RULE), ctypes.c_int(self.ruleset_fd),
                          ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0))
        if result < 0:
            self.skipped.append(f"{what}: {os.strerror(ctypes.get_errno())}")

    def enter(self, read: Iterable[str] = (), read_exec: Iterable[str] = ()) -> None:
        """Add the run's rules (``read``: the run's folder; ``read_exec``:
        the script's folder), then restrict this process and all it will
        start, for good. Raises ``SandboxError``."""
        if self.ruleset_fd < 0:
            return
        for path in read:
            self.allow(path, READ)
        for path in read_exec:
            self.allow(path, READ_EXEC)
        try:
            _check(
                _syscall(ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_int(self.ruleset_fd), ctypes.c_uint32(0)),
                "landlock_restrict_self",
            )
        finally:
            self.close()

    def close(self) -> None:
        """Close the ruleset and the descriptors of ``open``."""
        if self.ruleset_fd >= 0:
            os.close(self.ruleset_fd)
            self.ruleset_fd = -1
        self.close_roots()

    def close_roots(self) -> None:
        """Close the descriptors of ``open`` (in a child: its copies; the
        zygote keeps its own)."""
        for fd, _ in self.roots or ():
            os.close(fd)
        self.roots = None
