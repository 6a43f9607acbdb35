"""adjtimex(2) with modes=0: reads the kernel's clock discipline state and
changes nothing. Called only through Host.adjtimex(), the I/O boundary.

The struct layout is Linux's `struct timex` (glibc's <sys/timex.h>): C ints
and longs with natural alignment, which ctypes reproduces, followed by eleven
reserved ints.
"""

from __future__ import annotations

import ctypes
import os
import threading


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    )


FIELDS = tuple(name for name, _ in _Timex._fields_ if name not in ("modes", "time", "_reserved"))

_lock = threading.Lock()
_func: ctypes._NamedFuncPointer | None = None


def _adjtimex_func() -> ctypes._NamedFuncPointer:
    global _func
    with _lock:
        if _func is None:
            # the C library is already loaded into the interpreter: look the symbol up there
            # (ctypes.util.find_library would run ldconfig in a subprocess)
            try:
                func = ctypes.CDLL(None, use_errno=True).adjtimex
            except AttributeError:
                func = ctypes.CDLL("libc.so.6", use_errno=True).adjtimex
            func.argtypes = (ctypes.POINTER(_Timex),)
            func.restype = ctypes.c_int
            _func = func
        return _func


def read_adjtimex() -> dict[str, int]:
    """The struct timex fields by name, plus "state": adjtimex's return value
    (TIME_OK=0 ... TIME_ERROR=5, "clock not synchronized"). Raises OSError."""
    tx = _Timex()  # modes = 0: read only
    state = _adjtimex_func()(ctypes.byref(tx))
    if state == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"adjtimex: {os.strerror(err)}")
    values = {name: int(getattr(tx, name)) for name in FIELDS}
    values["state"] = int(state)
    return values
