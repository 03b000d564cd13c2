"""Tables (SPEC §4). Conversations are normalised rows: a message is one row.

Message ids are integers because the SQLite full-text index keys on rowid;
conversation ids are random UUIDs so they cannot be guessed or enumerated.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite would return naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # May their conversations train models (datasets/)? None: the deployment's default
    # (Settings.training_default_opt_in); True/False: the user's own choice (migration 0008).
    training_opt_in: Mapped[bool | None] = mapped_column(Boolean, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class RoleLimits(Base):
    """Admin-set limit overrides for every account of a role (over the built-in defaults)."""

    __tablename__ = "role_limits"

    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ModelSetting(Base):
    """Admin state of a model or profile that outlives a restart: enabled, and which
    profile is the active (switched-to) one."""

    __tablename__ = "model_settings"

    model_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class AuthSession(Base):
    """A login: access and refresh tokens name it, logout revokes it."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(lazy="joined")


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_user_updated", "user_id", "updated_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200), default="New chat")
    model: Mapped[str | None] = mapped_column(String(128))
    system_prompt: Mapped[str | None] = mapped_column(Text)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        Index(
            "ix_messages_pending",
            "checkpoint_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    # Indexed: deleting a message looks up its children (migration 0006).
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    # pending (generation running) | complete | interrupted | error
    status: Mapped[str] = mapped_column(String(16), default="complete")
    token_in: Mapped[int | None] = mapped_column(Integer)
    token_out: Mapped[int | None] = mapped_column(Integer)
    model: Mapped[str | None] = mapped_column(String(128))
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The request that generates it (an assistant answer): logs and usage rows join here.
    request_id: Mapped[str | None] = mapped_column(String(64))
    # While pending: the last time its generation saved its text. A pending answer whose
    # checkpoint is old has no live generation (its gateway died): any gateway may end it.
    checkpoint_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RequestLog(Base):
    """One usage row per chat or /v1 request."""

    __tablename__ = "requests"
    __table_args__ = (
        Index("ix_requests_user_created", "user_id", "created_at"),
        Index("ix_requests_created", "created_at"),
        # Not unique: clients may resend their own X-Request-ID.
        Index("ix_requests_request_id", "request_id"),
        Index("ix_requests_api_key_created", "api_key_id", "created_at"),
        # A row written twice under one key (replayed from the journal, or a web answer
        # billed first as interrupted by a sweeper) stays one row.
        Index("ux_requests_record_key", "record_key", unique=True),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    route: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    engine: Mapped[str | None] = mapped_column(String(256))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    ttft_ms: Mapped[float | None] = mapped_column()
    latency_ms: Mapped[float] = mapped_column(default=0.0)
    status: Mapped[str] = mapped_column(String(24))
    status_code: Mapped[int] = mapped_column(Integer)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    # Time it waited in the gateway's queue for an engine slot (None: it never queued).
    queue_ms: Mapped[float | None] = mapped_column()
    record_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StoredResponse(Base):
    """A ``/v1/responses`` answer kept (``store``, the default) for ``previous_response_id``
    and ``GET /v1/responses/{id}``, for ``CHATGATE_RESPONSES_RETENTION_DAYS``.

    ``context`` is the whole conversation that led to it (the previous response's
    context and output, then this request's input): a follow-up reads one row, not a
    chain, and each row is bounded by the prompt caps its request passed."""

    __tablename__ = "responses"
    __table_args__ = (Index("ix_responses_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    previous_response_id: Mapped[str | None] = mapped_column(String(64))
    context: Mapped[list[Any]] = mapped_column(JSON, default=list)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MessageFeedback(Base):
    """A user's rating of an assistant answer (feedback/): thumbs up or down and an
    optional corrected answer, which datasets/ exports in place of the rated one. ``model``
    is the answer's model id, copied so the per-model rates need no join (migration 0008)."""

    __tablename__ = "message_feedback"
    __table_args__ = (
        Index("ux_message_feedback_message_user", "message_id", "user_id", unique=True),
        Index("ix_message_feedback_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    rating: Mapped[str] = mapped_column(String(8))  # up | down
    correction: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class FinetuneJob(Base):
    """A LoRA fine-tuning job (finetune/): one trainer process, supervised by the gateway
    in ``owner``. ``heartbeat_at`` is its lease, as ``Message.checkpoint_at`` is an answer's:
    a running job whose heartbeat is older than ``CHATGATE_FINETUNE_LEASE_SECONDS`` has no
    live gateway behind it and any gateway ends it as ``interrupted``. A cancel made on
    another gateway sets ``cancel_requested``; the owner sees it and stops the process
    (migration 0009)."""

    __tablename__ = "finetune_jobs"
    __table_args__ = (Index("ix_finetune_jobs_status", "status"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # running | succeeded | failed | cancelled | interrupted
    status: Mapped[str] = mapped_column(String(16), default="running")
    base: Mapped[str] = mapped_column(String(256))
    dataset: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    owner: Mapped[str | None] = mapped_column(String(128))
    pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    epoch: Mapped[int | None] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column()
    learning_rate: Mapped[float | None] = mapped_column()
    tokens_per_second: Mapped[float | None] = mapped_column()
    curve: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [[step, loss], ...]
    dataset_sha256: Mapped[str | None] = mapped_column(String(64))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    model_name: Mapped[str | None] = mapped_column(String(256))
    model_version: Mapped[str | None] = mapped_column(String(32))
    gguf_lora: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ModelDeployment(Base):
    """A fine-tuned version the fleet should serve (finetune/reconcile.py): the desired
    state every gateway reads. Each host's engine leader downloads and loads it; ``error``
    is the last attempt's failure (the attempt ``request_id`` names), so the gateway that
    asked can answer with it; a new deploy of the same version clears it (migration 0010)."""

    __tablename__ = "model_deployments"

    model_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    base: Mapped[str] = mapped_column(String(256))
    name: Mapped[str] = mapped_column(String(256))
    version: Mapped[int] = mapped_column(Integer)
    registered: Mapped[str] = mapped_column(String(512))  # the MLflow registered model
    request_id: Mapped[str] = mapped_column(String(32))
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deployed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)


class ModelSplit(Base):
    """An A/B split of a base model's web chats (finetune/split.py; migration 0010)."""

    __tablename__ = "model_splits"

    base: Mapped[str] = mapped_column(String(256), primary_key=True)
    to_model: Mapped[str] = mapped_column(String(300))
    percent: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
