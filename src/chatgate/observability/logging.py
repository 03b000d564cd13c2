"""Structured logs: JSON lines (structlog) for every logger, secrets and e-mails masked.

One ``chatgate.inference`` line per chat or /v1 request carries the seed's fields
(request_id, user_id, model, ctx_len, input_tokens, output_tokens, latency_ms,
status_code). Optionally the lines also go to rotating files per kind under the data
dir: api (access log), inference, system (everything else).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import sys
from pathlib import Path
from typing import Any

import orjson
import structlog
from structlog.types import EventDict, Processor

from chatgate.settings import Settings
from chatgate.usage.record import UsageRecord

MASK = "********"
_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|api_?key|authorization|cookie", re.I)
# (triggers, pattern, replacement): a pattern runs only on a text whose case-folded form
# holds one of its trigger substrings. Substring tests are far cheaper than a regex
# pass, and most logged strings (paths, ids, model names) hold none, so the typical
# line costs a few ``in`` tests instead of six substitutions per string field.
_PATTERNS = [
    (("sk-cg-",), re.compile(r"sk-cg-[A-Za-z0-9_\-]{8,}"), "sk-cg-" + MASK),
    (
        ("eyj",),
        re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+"),
        "<jwt " + MASK + ">",
    ),
    (("bearer",), re.compile(r"(?i)(bearer\s+)\S+"), r"\1" + MASK),
    (
        ("pass", "secret", "token", "api_key", "apikey"),
        re.compile(
            r"(?i)((?:pass(?:word)?|secret|token|api_?key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',&}]+"
        ),
        r"\1" + MASK,
    ),
    (("://",), re.compile(r"(?i)(://[^:/\s]+:)[^@/\s]+@"), r"\1" + MASK + "@"),
    # e-mail addresses (an alphabetic TLD, so "model@127.0.0.1" engine names stay)
    (("@",), re.compile(r"\b[\w.+\-]+@((?:[\w\-]+\.)+[A-Za-z]{2,})\b"), r"***@\1"),
]
# Any trigger at all: one scan in C, so text that holds none (nearly all) costs one search.
_ANY_TRIGGER = re.compile(
    "|".join(re.escape(trigger) for triggers, _, _ in _PATTERNS for trigger in triggers)
)
# Fields the gateway fills itself with numbers, enums, ids and timestamps: never masked.
_SAFE_FIELDS = frozenset(
    {"timestamp", "level", "logger", "method", "status_code", "latency_ms",
     "ttft_ms", "user_id", "api_key_id", "route", "status", "ctx_len", "input_tokens",
     "output_tokens"}
)  # fmt: skip
_SECRET_KEY_MEMO: dict[str, bool] = {}
_SECRET_KEY_MEMO_MAX = 4096
FILE_KINDS = {
    "api": ("chatgate.access",),
    "inference": (
        "chatgate.inference",
        "chatgate.v1",
        "chatgate.chat",
        "chatgate.engines",
        "chatgate.usage",
        "chatgate.limits",
    ),
}
ROTATE_BYTES = 20 * 2**20
ROTATE_KEEP = 5


def mask_text(text: str) -> str:
    lower = text.casefold()  # casefold: as wide as the (?i) patterns (e.g. "ſ" ~ "s")
    if _ANY_TRIGGER.search(lower) is None:
        return text
    for triggers, pattern, replacement in _PATTERNS:
        if any(trigger in lower for trigger in triggers):
            text = pattern.sub(replacement, text)
    return text


def _is_secret_key(key: str) -> bool:
    # Field names repeat on every line: decide each once (bounded; names are few).
    known = _SECRET_KEY_MEMO.get(key)
    if known is None:
        known = bool(_SECRET_KEYS.search(key))
        if len(_SECRET_KEY_MEMO) < _SECRET_KEY_MEMO_MAX:
            _SECRET_KEY_MEMO[key] = known
    return known


def _mask_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return MASK if value and _is_secret_key(key) else mask_text(value)
    if isinstance(value, dict):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(key, item) for item in value]
    return value


def mask_secrets(_logger: Any, _name: str, event: EventDict) -> EventDict:
    """structlog processor: nothing secret or personal leaves the process in a log line."""
    return {
        key: value
        if key in _SAFE_FIELDS or value is None or isinstance(value, int | float)
        else _mask_value(key, value)
        for key, value in event.items()
    }


def render_json(value: Any, **_kw: Any) -> str:
    # orjson: several times faster than json.dumps, and these lines come per request.
    try:
        return orjson.dumps(value, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:  # e.g. an int beyond 64 bits: the slow path copes
        return json.dumps(value, default=repr)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.stdlib.ExtraAdder(),
    ]


class _FormatOnce(structlog.stdlib.ProcessorFormatter):
    """Formats each record once, however many handlers write it: the console and a file
    share this formatter, and a rotating file handler formats every record a second time
    to check its size. The last result is remembered with its record (one tuple, so a
    thread logging at the same moment cannot pair a record with another's line)."""

    _last: tuple[logging.LogRecord | None, str] = (None, "")

    def format(self, record: logging.LogRecord) -> str:
        last_record, line = self._last
        if last_record is not record:
            line = super().format(record)
            self._last = (record, line)
        return line


def _formatter(json_output: bool) -> structlog.stdlib.ProcessorFormatter:
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=render_json)
        if json_output
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return _FormatOnce(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            mask_secrets,
            renderer,
        ],
    )


class _KindFilter(logging.Filter):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def filter(self, record: logging.LogRecord) -> bool:
        return log_kind(record.name) == self.kind


def log_kind(logger_name: str) -> str:
    for kind, prefixes in FILE_KINDS.items():
        if logger_name.startswith(prefixes):
            return kind
    return "system"


def configure_logging(
    level: str = "info", json_output: bool = True, log_dir: Path | None = None
) -> None:
    """Route every logger through structlog's formatter; files per kind when log_dir is set."""
    _skip_unused_record_fields()
    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    json_formatter = _formatter(True)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(json_formatter if json_output else _formatter(False))
    handlers: list[logging.Handler] = [console]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        for kind in (*FILE_KINDS, "system"):
            handler = logging.handlers.RotatingFileHandler(
                log_dir / f"{kind}.log",
                maxBytes=ROTATE_BYTES,
                backupCount=ROTATE_KEEP,
                encoding="utf-8",
            )
            handler.setFormatter(json_formatter)
            handler.addFilter(_KindFilter(kind))
            handlers.append(handler)
    root = logging.getLogger()
    root.handlers = handlers
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True


def _skip_unused_record_fields() -> None:
    """The Logging HOWTO's "Optimization" settings: no formatter here reads a record's
    caller, thread or process, and looking each up costs time on every line (two per
    request)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure_from_settings(settings: Settings) -> None:
    configure_logging(
        settings.log_level,
        json_output=settings.log_format == "json",
        log_dir=settings.log_dir if settings.log_to_files else None,
    )


inference_log = structlog.stdlib.get_logger("chatgate.inference")


def log_usage(row: UsageRecord) -> None:
    """The per-request line with the seed's fields."""
    inference_log.info(
        "request",
        request_id=row.request_id,
        user_id=row.user_id,
        api_key_id=row.api_key_id,
        route=row.route,
        model=row.model,
        engine=row.engine,
        ctx_len=row.prompt_tokens,
        input_tokens=row.prompt_tokens,
        output_tokens=row.completion_tokens,
        ttft_ms=round(row.ttft_ms, 1) if row.ttft_ms is not None else None,
        latency_ms=round(row.latency_ms, 1),
        status=row.status,
        status_code=row.status_code,
        finish_reason=row.finish_reason,
        error=row.error,
    )
