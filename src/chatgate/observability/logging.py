"""Structured logs: JSON lines (structlog) for every logger, secrets and e-mails masked.

One ``chatgate.inference`` line per chat or /v1 request carries the seed's fields
(request_id, user_id, model, ctx_len, input_tokens, output_tokens, latency_ms,
status_code). Optionally the lines also go to rotating files per kind under the data
dir: api (access log), inference, system (everything else).
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from pathlib import Path
from typing import Any

import structlog
from structlog.types import EventDict, Processor

from chatgate.settings import Settings
from chatgate.usage.record import UsageRecord

MASK = "********"
_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|api_?key|authorization|cookie", re.I)
_PATTERNS = [
    (re.compile(r"sk-cg-[A-Za-z0-9_\-]{8,}"), "sk-cg-" + MASK),
    (re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+"), "<jwt " + MASK + ">"),
    (re.compile(r"(?i)(bearer\s+)\S+"), r"\1" + MASK),
    (
        re.compile(
            r"(?i)((?:pass(?:word)?|secret|token|api_?key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',&}]+"
        ),
        r"\1" + MASK,
    ),
    (re.compile(r"(?i)(://[^:/\s]+:)[^@/\s]+@"), r"\1" + MASK + "@"),
    # e-mail addresses (an alphabetic TLD, so "model@127.0.0.1" engine names stay)
    (re.compile(r"\b[\w.+\-]+@((?:[\w\-]+\.)+[A-Za-z]{2,})\b"), r"***@\1"),
]
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
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _mask_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return MASK if _SECRET_KEYS.search(key) and value else mask_text(value)
    if isinstance(value, dict):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(key, item) for item in value]
    return value


def mask_secrets(_logger: Any, _name: str, event: EventDict) -> EventDict:
    """structlog processor: nothing secret or personal leaves the process in a log line."""
    return {key: _mask_value(key, value) for key, value in event.items()}


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.stdlib.ExtraAdder(),
    ]


def _formatter(json_output: bool) -> structlog.stdlib.ProcessorFormatter:
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
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
    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = _formatter(json_output)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
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
            handler.setFormatter(_formatter(True))
            handler.addFilter(_KindFilter(kind))
            handlers.append(handler)
    root = logging.getLogger()
    root.handlers = handlers
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True


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
