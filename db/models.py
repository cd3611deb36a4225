"""Tables: users, their decision-flow sessions with the answers, the recommendations given, the QME exam calendar
and the admin changes to it that wait for a confirm, reminder subscriptions, broadcasts and the outbox of messages
the bot sends on its own initiative (with the shared send-rate row).

Nothing identifying is stored beyond the Telegram user id (no names, no usernames): see /privacy.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class User(Timestamps, Base):
    """A Telegram user who has talked to the bot; the id doubles as the private chat id."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)

    sessions: Mapped[list[FlowSession]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class FlowSession(Timestamps, Base):
    """One pass through the decision flow. At most one per user is active (a partial unique index)."""

    __tablename__ = "flow_sessions"
    __table_args__ = (
        Index(
            "uq_flow_sessions_one_active",
            "user_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_flow_sessions_status_user_id_id", "status", "user_id", "id"),  # the export's latest flows
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    """active, completed (the recommendation was shown), cancelled (/cancel) or abandoned (/restart)."""
    current_key: Mapped[str | None] = mapped_column(String(32))
    editing: Mapped[bool] = mapped_column(Boolean, default=False)
    draft: Mapped[list[Any]] = mapped_column(default=list)
    turn: Mapped[int] = mapped_column(Integer, default=0)
    """Bumped on every change; buttons carry it so that a press on an outdated message is recognised."""
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    moved_by_update: Mapped[int | None] = mapped_column(BigInteger)
    """The Telegram update that last changed the turn: a typed answer sent before it is late (bot.update_order)."""

    user: Mapped[User] = relationship(back_populates="sessions")
    answers: Mapped[list[AnswerRow]] = relationship(
        back_populates="session", cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )
    recommendations: Mapped[list[RecommendationRow]] = relationship(
        back_populates="session", cascade="all, delete-orphan", passive_deletes=True
    )


class AnswerRow(Timestamps, Base):
    """One answer, kept as its option key (a string) or keys (a list, for multi-choice questions)."""

    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("session_id", "question_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("flow_sessions.id", ondelete="CASCADE"), index=True)
    question_key: Mapped[str] = mapped_column(String(32))
    value: Mapped[Any] = mapped_column(JSON)

    session: Mapped[FlowSession] = relationship(back_populates="answers")


class RecommendationRow(Base):
    """The path recommended at the end of a session, with the reasons shown."""

    __tablename__ = "recommendations"
    __table_args__ = (Index("ix_recommendations_session_id_id", "session_id", "id"),)  # the latest per session

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("flow_sessions.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(16))
    qme_score: Mapped[int] = mapped_column(Integer, default=0)
    ime_score: Mapped[int] = mapped_column(Integer, default=0)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    session: Mapped[FlowSession] = relationship(back_populates="recommendations")


class ExamSitting(Timestamps, Base):
    """One QME exam window as admins keep it; the roadmap reads these (flows.sittings.Sitting in the bot layer)."""

    __tablename__ = "exam_sittings"
    __table_args__ = (
        CheckConstraint("last_day >= first_day", name="window_order"),
        CheckConstraint("deadline IS NULL OR deadline < first_day", name="deadline_before_window"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_day: Mapped[date] = mapped_column(Date, index=True)
    last_day: Mapped[date] = mapped_column(Date)
    deadline: Mapped[date | None] = mapped_column(Date)
    """The application deadline (Forms 100 and 102); None when the announcement gave none."""
    note: Mapped[str] = mapped_column(String(300), default="")
    source: Mapped[str] = mapped_column(String(500), default="")


class AdminAction(Base):
    """A change an admin asked for and has not confirmed yet.

    Kept in the database, not in memory, so the Confirm button works after a restart and in any bot process.
    """

    __tablename__ = "admin_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Subscription(Timestamps, Base):
    """Whether the physician wants exam reminders (and broadcasts sent to all subscribers).

    Kept when switched off (active False) so that a user who blocked the bot or said stop is skipped by
    messages already queued.
    """

    __tablename__ = "subscriptions"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Broadcast(Timestamps, Base):
    """An admin's message to an audience; its deliveries are rows of `outbox`, written in the same transaction."""

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="broadcast")
    text: Mapped[str] = mapped_column(Text)
    """Telegram HTML, validated before it was queued."""
    audience: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    """The admin's user id; no foreign key, so the broadcast outlives the admin (/delete_me sets it NULL)."""
    status: Mapped[str] = mapped_column(String(16), default="queued")
    """queued (being delivered), cancelled (pending rows skipped) or done (every row resolved)."""
    total: Mapped[int] = mapped_column(Integer, default=0)
    progress_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    progress_message_id: Mapped[int | None] = mapped_column(Integer)
    progress_buttons: Mapped[list[Any] | None] = mapped_column(JSON)
    """Inline keyboard rows kept on the progress message while it sends (e.g. Cancel); removed at the end."""
    progress_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When the progress message was last edited, so that all processes together edit it at a modest rate."""
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OutboxMessage(Timestamps, Base):
    """One message to one private chat, queued before it is sent so that a crash loses nothing.

    A row ends in exactly one of sent (with Telegram's message id), failed (with the reason) or skipped; while a
    sender holds it, it is in_flight until `lease_until`, after which any sender may claim it again.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_not_before", "status", "not_before"),
        Index("ix_outbox_broadcast_id_status", "broadcast_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broadcast_id: Mapped[int | None] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """broadcast or reminder."""
    text: Mapped[str | None] = mapped_column(Text)
    """Telegram HTML; None means the broadcast's text (kept once, not once per recipient)."""
    buttons: Mapped[list[Any] | None] = mapped_column(JSON)
    """Inline keyboard rows of {"text", "callback_data"}."""
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    """b:<broadcast>:<user> or r:<user>:<sitting>:<event>:<date>:<days>: a message is never queued twice."""
    status: Mapped[str] = mapped_column(String(12), default="pending")
    """pending, in_flight, sent, failed or skipped."""
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Claims so far; also the fencing token that lets only the current holder resolve the row."""
    message_id: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(300))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SendRate(Base):
    """The bot-wide send schedule shared by every process on PostgreSQL (one row, id 1).

    `next_at` is the earliest time the next message may go out (slots are spaced evenly, so no one-second window
    ever holds more than MEDLEGAL_RATE_LIMIT); `paused_until` holds bulk sending after Telegram answered 429.
    """

    __tablename__ = "send_rate"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    paused_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PollRow(Timestamps, Base):
    """A community poll (flows.polls.Poll in the bot layer); options are kept in the order shown."""

    __tablename__ = "polls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    question: Mapped[str] = mapped_column(String(300))
    options: Mapped[list[Any]] = mapped_column(JSON)
    """[{"key", "label"}, ...]."""
    choice: Mapped[str] = mapped_column(String(8), default="single")
    """single or multiple."""
    status: Mapped[str] = mapped_column(String(8), default="open")
    """open or closed."""
    opens_on: Mapped[date | None] = mapped_column(Date)
    closes_on: Mapped[date | None] = mapped_column(Date)


class PollVote(Base):
    """One option a physician chose in a poll (a multiple-choice answer is several rows).

    Only the day is kept, never a finer time, so that no published figure can be tied to a moment.
    """

    __tablename__ = "poll_votes"
    __table_args__ = (
        Index("ix_poll_votes_poll_id_option_key", "poll_id", "option_key"),
        Index("ix_poll_votes_poll_id_answered_on", "poll_id", "answered_on", "user_id", "option_key"),  # export
    )

    poll_id: Mapped[int] = mapped_column(ForeignKey("polls.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    option_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    answered_on: Mapped[date] = mapped_column(Date)


class PollSnapshot(Base):
    """The peer figures of one poll as of `taken_on`, shared by every process and refreshed at most once a day,
    so that two looks a minute apart never differ by one physician's answer."""

    __tablename__ = "poll_snapshots"

    poll_id: Mapped[int] = mapped_column(ForeignKey("polls.id", ondelete="CASCADE"), primary_key=True)
    taken_on: Mapped[date] = mapped_column(Date)
    respondents: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """{option key: physicians who chose it}."""


class CommunitySource(Base):
    """A start link an admin made for a community, channel or event (/invite NAME)."""

    __tablename__ = "community_sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    """The start parameter (`?start=CODE`), also the broadcast audience `source:CODE`."""
    name: Mapped[str] = mapped_column(String(100))
    created_on: Mapped[date] = mapped_column(Date)


class UserSource(Base):
    """The start link a physician first arrived through (the first one wins); used in aggregates only."""

    __tablename__ = "user_sources"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    source_id: Mapped[int] = mapped_column(ForeignKey("community_sources.id", ondelete="CASCADE"), index=True)
    started_on: Mapped[date] = mapped_column(Date)


class ProgressStep(Base):
    """A progress step the physician ticked on /progress (flows/data/progress.toml keys), with the day it was ticked.

    Unticking deletes the row, so the table holds exactly the steps done.
    """

    __tablename__ = "progress_steps"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    step_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    done_on: Mapped[date] = mapped_column(Date)
    """Day resolution, in MEDLEGAL_TIMEZONE (or MEDLEGAL_TODAY)."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProgressNudge(Timestamps, Base):
    """The physician's opt-in to a weekly nudge about their next open step.

    `since` is when it was last turned on: the first nudge comes a week later, each next one a week after the last
    nudge queued (read back from the outbox), so the schedule survives restarts and never doubles up.
    """

    __tablename__ = "progress_nudges"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProcessedUpdate(Base):
    """A Telegram update id some process has taken on, so a redelivered update is processed once.

    No user id: the row says nothing about anyone. Rows older than a few days are pruned (Telegram redelivers
    for at most a day).
    """

    __tablename__ = "processed_updates"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, index=True)
