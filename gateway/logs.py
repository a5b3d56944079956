"""structlog set-up: one JSON object per line on stderr, for our events and every library's.

Log calls pass ids, agency ids, key ids and reason codes as fields; never payloads,
names or free text from a message. Tests grep captured output for a subject's name.

Library records (aio-pika, aiohttp, asyncio) go through the same processors as ours
(``structlog.stdlib.ProcessorFormatter``), so a library traceback is one JSON line too.
An exception is rendered as a structured field: its type, its frames as
``file:line:function`` and, only for the gateway's own ``GatewayError`` hierarchy (whose
messages are written never to hold personal data), its message. Other exceptions'
messages and local values are left out: an aiohttp parser error quotes the request's
bytes, a driver error may quote a value. A redaction processor runs last on every event
as a line of defence: secret-looking keys are replaced and bearer tokens, URL
credentials and query strings are scrubbed from every string.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any, Mapping, MutableMapping, TextIO

import structlog

from gateway.errors import GatewayError

log = structlog.get_logger("gateway.logs")

#: What replaces a redacted value.
REDACTED = "[redacted]"
#: Keys whose value is never logged, whatever it is (matched case-insensitively, anywhere in the key).
SECRET_KEY_PARTS = ("authorization", "token", "password", "passphrase", "secret", "cookie", "query", "body",
                    "api_key", "apikey", "credential")
#: Keys a secret part may appear in without holding a secret (hashes, counts, names of codes).
_SAFE_KEYS = frozenset({"token_sha256"})
_MAX_FRAMES = 30
_MAX_TEXT = 500
_MAX_CHAIN = 3

_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[^\s'\"\\,;]+")
_URL_CREDENTIALS = re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^\s/@'\"\\]+@")
_QUERY = re.compile(r"\?[^\s'\"\\#]+")
_HEADER_LINE = re.compile(r"(?i)\b(authorization|cookie|x-api-key)\s*[:=]\s*[^\r\n'\"\\]*")
#: Something each of the four patterns above needs in order to match (a superset: a text
#: without any of these is left unchanged by all of them).
_MAY_NEED_SCRUB = re.compile(r"(?i)bearer|basic|authorization|cookie|x-api-key|@|\?")
_SITE_PACKAGES = re.compile(r".*[/\\](?:site|dist)-packages[/\\]")
_PROJECT_ROOT = str(Path(__file__).resolve().parent.parent) + "/"


def configure_logging(level: str = "info") -> None:
    """Send structlog and stdlib logging (aio-pika, aiohttp, asyncio) as redacted JSON lines to stderr."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    handler = _CurrentStderr()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        # The record's template and arguments, so _foreign_event can fill in safe versions.
        use_get_message=False, pass_foreign_args=True,
        foreign_pre_chain=[_foreign_event, structlog.stdlib.add_logger_name, structlog.stdlib.add_log_level,
                           structlog.processors.TimeStamper(fmt="iso", utc=True)],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structured_exc_info, redact,
                    structlog.processors.JSONRenderer(sort_keys=True)],
    ))
    # Libraries log through stdlib logging: warnings and up only (their info is chatty).
    logging.basicConfig(handlers=[handler], level=max(numeric, logging.WARNING), force=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structured_exc_info,
            redact,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Resolve sys.stderr at each use, not once: it may be replaced (tests, daemons).
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
    sys.excepthook = _log_uncaught


def install_loop_exception_handler(loop: asyncio.AbstractEventLoop) -> None:
    """Log what asyncio cannot deliver (e.g. "Task exception was never retrieved") as one redacted JSON line."""
    loop.set_exception_handler(_loop_exception)


def _loop_exception(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # asyncio's own message is fixed text; the task, future and handle reprs in the context
    # are left out because they quote coroutine arguments and exception messages.
    exc = context.get("exception")
    log.error("asyncio.unhandled", detail=str(context.get("message", ""))[:_MAX_TEXT],
              exc_info=exc if isinstance(exc, BaseException) else None)


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    log.critical("process.uncaught_exception", exc_info=(kind, exc, tb))


# --- processors -------------------------------------------------------------------------


def _foreign_event(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A library record's text: its format string filled with exceptions shown by type only."""
    record: logging.LogRecord | None = event_dict.get("_record")
    args = event_dict.pop("positional_args", None)
    if record is None:
        return event_dict
    event_dict["event"] = _record_text(record, args)
    return event_dict


def _record_text(record: logging.LogRecord, args: Any) -> str:
    template = str(record.msg)
    if args:
        if isinstance(args, Mapping):
            args = {k: _safe_arg(v) for k, v in args.items()}
        else:
            args = tuple(_safe_arg(a) for a in args)
        try:
            text = template % args
        except (TypeError, ValueError, KeyError):
            text = template
    else:
        text = template
    if record.name == "asyncio":
        # The default loop handler appends task and exception reprs on the following lines.
        text = text.split("\n", 1)[0]
    return text[:_MAX_TEXT]


def _safe_arg(value: Any) -> Any:
    if isinstance(value, BaseException):
        return _exception_label(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    return value


def _exception_label(exc: BaseException) -> str:
    if isinstance(exc, GatewayError):
        return f"{type(exc).__name__}({exc})"
    return f"<{type(exc).__name__}>"


def structured_exc_info(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace ``exc_info`` by an ``exception`` field: type, frames and (GatewayError only) message."""
    exc_info = event_dict.pop("exc_info", None)
    event_dict.pop("exception", None)  # a pre-rendered multi-line traceback is never kept
    event_dict.pop("stack", None)
    event_dict.pop("stack_info", None)
    exc = _exception_of(exc_info)
    if exc is not None:
        event_dict["exception"] = describe_exception(exc)
    return event_dict


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
        return exc_info[1]
    if exc_info is True:
        return sys.exc_info()[1]
    return None


def describe_exception(exc: BaseException, depth: int = 0) -> dict[str, Any]:
    """A JSON-safe description of an exception: never its locals, its message only if it is a GatewayError."""
    kind = type(exc)
    described: dict[str, Any] = {
        "type": kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}",
        "frames": [f"{_short_path(f.filename)}:{f.lineno}:{f.name}"
                   for f in traceback.extract_tb(exc.__traceback__)[-_MAX_FRAMES:]],
    }
    if isinstance(exc, GatewayError):
        described["code"] = exc.code
        described["message"] = str(exc)[:_MAX_TEXT]
    chained = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if chained is not None and depth < _MAX_CHAIN:
        described["cause"] = describe_exception(chained, depth + 1)
    return described


def _short_path(filename: str) -> str:
    if filename.startswith(_PROJECT_ROOT):
        return filename[len(_PROJECT_ROOT):]
    return _SITE_PACKAGES.sub("", filename)


def redact(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Last line of defence: drop secret-looking keys' values and scrub tokens, credentials, query strings."""
    for key in list(event_dict):
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def _secret_key(key: str) -> bool:
    lowered = key.lower()
    return lowered not in _SAFE_KEYS and any(p in lowered for p in SECRET_KEY_PARTS)


#: Keys already decided (log keys are few, written in the code): the decision is made once
#: per key, not once per log line. Bounded, in case keys ever came from data.
_SECRET_KEYS: dict[str, bool] = {}
_SECRET_KEYS_MAX = 4096


def _redact_value(key: Any, value: Any) -> Any:
    if isinstance(key, str):
        secret = _SECRET_KEYS.get(key)
        if secret is None:
            secret = _secret_key(key)
            if len(_SECRET_KEYS) < _SECRET_KEYS_MAX:
                _SECRET_KEYS[key] = secret
        if secret:
            return REDACTED if value is not None else None
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(None, v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    return value


def scrub(text: str) -> str:
    """Remove bearer tokens, header values of credentials, URL credentials and query strings from a text."""
    if not _MAY_NEED_SCRUB.search(text):
        return text  # most values (ids, codes) hold nothing any pattern below could match
    text = _HEADER_LINE.sub(lambda m: f"{m.group(1)}: {REDACTED}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    return _QUERY.sub(f"?{REDACTED}", text)


class _CurrentStderr(logging.StreamHandler[TextIO]):
    """A stream handler that always writes to the current ``sys.stderr``."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass
