"""Where an exception happened, as a code location that is safe to log.

``transport.handler_failed`` names the innermost frame of the gateway's own code
(``gateway/withdrawal.py:141:apply``): enough to find the bug, and unlike the exception
text it cannot quote payload values.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

_PACKAGE = Path(__file__).resolve().parent
_ROOT = _PACKAGE.parent


def failure_site(exc: BaseException) -> str:
    """``path:line:function`` of the innermost frame inside the ``gateway`` package,
    else of the innermost frame at all; ``unknown`` without a traceback."""
    innermost: TracebackType | None = None
    own: TracebackType | None = None
    tb = exc.__traceback__
    while tb is not None:
        innermost = tb
        try:
            if Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE):
                own = tb
        except (OSError, ValueError):
            pass
        tb = tb.tb_next
    chosen = own or innermost
    if chosen is None:
        return "unknown"
    code = chosen.tb_frame.f_code
    path = Path(code.co_filename)
    try:
        shown = path.resolve().relative_to(_ROOT).as_posix()
    except (OSError, ValueError):
        shown = path.name  # outside the project (a library): its file name only
    return f"{shown}:{chosen.tb_lineno}:{code.co_name}"


def failure_code(exc: BaseException) -> str:
    """A reason code for the failure: the GatewayError code, else the exception type name."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) and code else type(exc).__name__
