"""Admins' poll and community-link tools: /poll_new, /poll_close, /invite NAME, /sources.

A new poll is previewed exactly as physicians will see it and waits for Confirm in `admin_actions` (as the
calendar tools do), so the buttons work after a restart and in any bot process; Confirm can also announce it to
all subscribers through the broadcast outbox. `medlegal polls` shares the formats defined here.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.export_data import NO_LINK, OPEN, SOURCE_POLL
from bot.polls import as_poll, short
from bot.published import published
from bot.screens import Button, Reply, Screen, esc
from db import outbox, sources
from db import polls as store
from db import repository as repo
from db.audience import recipients
from db.models import AdminAction, CommunitySource, PollRow, utcnow
from flows.polls import MAX_OPTIONS, Poll, effective_k, parse_poll_text, slug, unique_key

ACTION_TTL = timedelta(hours=1)
UTC_ZONE = ZoneInfo("UTC")
WAIT_KIND = "poll_wait"
DRAFT_KIND = "poll_new"
NAME_MAX = 100

CHAT_FORMAT = (
    f"First line: the question. Then one option per line (2 to {MAX_OPTIONS}). A line saying just "
    "<i>multiple</i> makes it multiple choice (single choice otherwise). Or all on one line, separated by |."
)
NOT_ADMIN = "Sorry, polls and community links are managed by the community admins; this command is only for them."
ASK = (
    "<b>New poll</b>\nSend the poll as one message. " + CHAT_FORMAT + "\n\nFor example:\n"
    "<code>What do you charge for a standard IME?\nUnder $1,000\n$1,000-2,000\n$2,001-3,500\nOver $3,500</code>\n"
    "or <code>Which case types? | Personal injury | Disability | multiple</code>"
)
CANCEL = "✖️ Cancel"
CONFIRM = "✅ Confirm"
CONFIRM_ANNOUNCE = "📣 Confirm and announce"
PREVIEW_FOOTER = (
    '<i>Nothing is saved until you press Confirm (valid for an hour). "Confirm and announce" also tells all '
    "subscribers through the broadcast outbox.</i>"
)
NOT_A_POLL = "That is not a poll I can use: {problem}."
CANCELLED = "Cancelled: no poll was added."
GONE = "This preview was already confirmed, cancelled or replaced; nothing more was done."
EXPIRED = "This preview is more than an hour old, so it has expired; nothing was saved. Send /poll_new again."
NOT_YOURS = "This poll was drafted by another admin; only they can confirm it."
UNKNOWN_BUTTON = "That button is not one I recognise; nothing was changed."
ADDED = "✅ <b>Poll added</b> (key <code>{key}</code>). Physicians find it with /polls."
ANNOUNCED = "📣 Announcement queued to {count} subscriber{s}; `medlegal broadcast status` follows it."
NOBODY = "No active subscriber to announce it to; the poll is open in /polls."
ANNOUNCEMENT = (
    "📊 <b>New community poll</b>\n{question}\n\nSend /polls to answer with one tap. Answers count only in totals, "
    "never by name."
)
CLOSE_PICK = "<b>Close a poll</b>\nWhich open poll? Closed polls keep their answers; nobody can change them any more."
NO_OPEN = "There is no open poll to close."
CLOSE_ASK = "Close this poll?\n📊 <b>{question}</b> (<code>{key}</code>)\nAnswers are kept; nobody can change them."
CLOSED_DONE = "Closed: 📊 <b>{question}</b>. Its answers are kept."
ALREADY_CLOSED = "That poll is already closed."
NO_SUCH_POLL = "There is no poll with the key {key!r} (/poll_close lists the open ones)."
KEPT = "Nothing was changed: the poll stays open."
INVITE_USAGE = "Usage: /invite NAME, e.g. /invite Ortho Society. The same name gives the same link."
INVITE_DONE = (
    "🔗 <b>Start link for {name}</b>\n{link}\n\nPhysicians who first arrive through it are counted under "
    "<code>{code}</code>, in totals only (/sources). Broadcast to them with the audience <code>source:{code}</code>."
)
INVITE_NAME_LONG = f"A link name has at most {NAME_MAX} characters."
NO_SOURCES = "No start links yet. /invite NAME makes one."
SOURCES_HEADER = (
    "<b>Community links</b>, {period}: physicians who arrived through each link, as <code>medlegal export</code> "
    "counts them (poll source.link). Counts below {k} show as &lt;{k}, and so does any figure that would let "
    "someone work one out; the month under way is not counted yet."
)

_DRAFT = re.compile(r"^pa:(ok|an|no):([0-9]{1,12}):([0-9a-f]{8})$")
_CLOSE = re.compile(r"^pa:(c|cy|cn):([0-9]{1,9})$")


# -- shared with the CLI ----------------------------------------------------------------------------------
def poll_line(row: PollRow, today: date) -> str:
    """`KEY  STATUS  single|multiple  N options  QUESTION` for `medlegal polls list`."""
    poll = as_poll(row)
    state = "open" if poll.is_open(today) else ("closed" if poll.status == "closed" else "scheduled/ended")
    dates = ""
    if poll.opens or poll.closes:
        dates = f"  {poll.opens.isoformat() if poll.opens else '…'}..{poll.closes.isoformat() if poll.closes else '…'}"
    return f"{poll.key}  {state}  {poll.choice}  {len(poll.options)} options{dates}  {poll.question}"


async def store_poll(session: AsyncSession, poll: Poll) -> PollRow | None:
    """Add the poll; None when its key is taken."""
    return await store.add_poll(
        session,
        key=poll.key,
        question=poll.question,
        options=[(o.key, o.label) for o in poll.options],
        choice=poll.choice,
        status=poll.status,
        opens_on=poll.opens,
        closes_on=poll.closes,
    )


def start_link(username: str, code: str) -> str:
    return f"https://t.me/{username}?start={code}"


async def make_source(session: AsyncSession, name: str, today: date) -> CommunitySource:
    """The link for this name: the one made before, or a new one whose code is derived from the name."""
    existing = await sources.source_by_name(session, name)
    if existing is not None:
        return existing
    code = unique_key(slug(name, 24) or "link", await sources.source_codes(session))
    return await sources.add_source(session, code, name, today)


def _poll_text(poll: Poll) -> list[str]:
    kind = "multiple choice (toggles, then Done)" if poll.multi else "single choice (one tap)"
    return [
        f"📊 <b>{esc(poll.question)}</b>",
        *(f"{'⬜' if poll.multi else '•'} {esc(o.label)}" for o in poll.options),
        f"<i>{kind}; key <code>{esc(poll.key)}</code></i>",
    ]


class PollsAdmin:
    """The `Plugin` (bot.dialogue) for admins: polls and community start links."""

    commands = frozenset({"poll_new", "poll_close", "invite", "sources"})
    verbs = frozenset({"pa"})

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        admin_ids: Iterable[int],
        today: Callable[[], date],
        k_min: Callable[[], int],
        bot_username: Callable[[], str],
        now: Callable[[], datetime] = utcnow,
        zone: ZoneInfo = UTC_ZONE,
    ) -> None:
        self.zone = zone
        self.sessions = sessions
        self.admin_ids = frozenset(admin_ids)
        self.today = today
        self.k_min = k_min
        self.bot_username = bot_username
        self.now = now

    # -- Plugin -----------------------------------------------------------------------------------------
    async def command(self, user_id: int, name: str, args: str) -> Reply:
        if user_id not in self.admin_ids:
            return Reply(send=[Screen(esc(NOT_ADMIN))])
        if name == "invite":
            return await self._invite(args)
        if name == "sources":
            return await self._sources()
        if name == "poll_close":
            return await self._close_start(args.strip())
        async with self.sessions() as session, session.begin():
            await repo.lock_user(session, user_id)
            await self._drop_drafts(session, user_id)
            if args.strip():
                return await self._preview(session, user_id, args)
            nonce = secrets.token_hex(4)
            action_id = await repo.add_admin_action(session, user_id, WAIT_KIND, {"nonce": nonce})
        return Reply(send=[Screen(ASK, ((Button(CANCEL, f"pa:no:{action_id}:{nonce}"),),))])

    async def text(self, user_id: int, text: str) -> Reply | None:
        """The admin's poll, while /poll_new waits for it; everyone else's text goes to the flow."""
        if user_id not in self.admin_ids:
            return None
        async with self.sessions() as session, session.begin():
            stmt = select(AdminAction).where(AdminAction.user_id == user_id, AdminAction.kind == WAIT_KIND)
            waiting = [a for a in (await session.execute(stmt)).scalars() if not self._expired(a.created_at)]
            if not waiting:
                return None
            await repo.lock_user(session, user_id)
            reply = await self._preview(session, user_id, text)
            if reply.send and reply.send[-1].keyboard:  # a preview: the wait is over
                await self._drop_drafts(session, user_id, kinds=(WAIT_KIND,))
            return reply

    async def press(self, user_id: int, data: str) -> Reply:
        if user_id not in self.admin_ids:
            return Reply(notice=NOT_ADMIN)
        if match := _CLOSE.match(data):
            return await self._close_press(match.group(1), int(match.group(2)))
        match = _DRAFT.match(data)
        if match is None:
            return Reply(notice=UNKNOWN_BUTTON)
        verb, action_id, nonce = match.group(1), int(match.group(2)), match.group(3)
        async with self.sessions() as session, session.begin():
            return await self._decide(session, user_id, action_id, nonce, verb)

    # -- /poll_new --------------------------------------------------------------------------------------
    def _expired(self, created_at: datetime) -> bool:
        created = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)  # SQLite: naive UTC
        return self.now() - created > ACTION_TTL

    async def _drop_drafts(
        self, session: AsyncSession, user_id: int, kinds: tuple[str, ...] = (WAIT_KIND, DRAFT_KIND)
    ) -> None:
        """One poll draft per admin: a new /poll_new replaces the previous one, whose buttons then say so."""
        await session.execute(
            delete(AdminAction).where(AdminAction.user_id == user_id, AdminAction.kind.in_(kinds)),
            execution_options={"synchronize_session": False},
        )

    async def _preview(self, session: AsyncSession, user_id: int, text: str) -> Reply:
        try:
            poll = parse_poll_text(text, await store.poll_keys(session))
        except ValueError as exc:
            problem = NOT_A_POLL.format(problem=str(exc).rstrip("."))
            return Reply(send=[Screen(f"{esc(problem)}\n\n{ASK}")])
        nonce = secrets.token_hex(4)
        payload = {"nonce": nonce, "poll": poll.model_dump(mode="json")}
        action_id = await repo.add_admin_action(session, user_id, DRAFT_KIND, payload)
        ref = f"{action_id}:{nonce}"
        keyboard = (
            (Button(CONFIRM, f"pa:ok:{ref}"), Button(CANCEL, f"pa:no:{ref}")),
            (Button(CONFIRM_ANNOUNCE, f"pa:an:{ref}"),),
        )
        lines = ["<b>Add this poll?</b>", *_poll_text(poll), "", PREVIEW_FOOTER]
        return Reply(send=[Screen("\n".join(lines), keyboard)])

    async def _decide(self, session: AsyncSession, user_id: int, action_id: int, nonce: str, verb: str) -> Reply:
        action = await repo.get_admin_action(session, action_id)
        if action is None or action.kind not in {WAIT_KIND, DRAFT_KIND} or action.payload.get("nonce") != nonce:
            return Reply(notice=GONE, edit=Screen(GONE))
        if action.user_id != user_id:
            return Reply(notice=NOT_YOURS)
        if not await repo.take_admin_action(session, action_id):
            return Reply(notice=GONE, edit=Screen(GONE))
        if verb == "no":
            return Reply(notice=CANCELLED, edit=Screen(CANCELLED))
        if action.kind != DRAFT_KIND:
            return Reply(notice=UNKNOWN_BUTTON)
        if self.now() - action.created_at > ACTION_TTL:
            return Reply(notice=EXPIRED, edit=Screen(EXPIRED))
        try:
            poll = Poll.model_validate(action.payload.get("poll"))
        except ValidationError:
            return Reply(notice=GONE, edit=Screen(GONE))
        taken = await store.poll_keys(session)
        if poll.key in taken:  # another admin took the key since the preview
            poll = poll.model_copy(update={"key": unique_key(poll.key, taken)})
        row = await store_poll(session, poll)
        assert row is not None
        lines = [ADDED.format(key=esc(poll.key)), *_poll_text(poll)[:1]]
        if verb == "an":
            lines.append(await self._announce(session, user_id, poll))
        return Reply(notice="Saved.", edit=Screen("\n".join(lines)))

    async def _announce(self, session: AsyncSession, user_id: int, poll: Poll) -> str:
        people = await recipients(session, "all")
        if not people:
            return NOBODY
        await outbox.queue_broadcast(
            session,
            text=ANNOUNCEMENT.format(question=esc(poll.question)),
            audience="all",
            created_by=user_id,
            recipients=people,
        )
        return ANNOUNCED.format(count=len(people), s="" if len(people) == 1 else "s")

    # -- /poll_close ------------------------------------------------------------------------------------
    async def _close_start(self, key: str) -> Reply:
        async with self.sessions() as session:
            if key:
                row = await store.poll_by_key(session, key.lower())
                if row is None:
                    return Reply(send=[Screen(esc(NO_SUCH_POLL.format(key=key)))])
                return Reply(send=[self._close_confirm(row)])
            rows = [r for r in await store.list_polls(session) if as_poll(r).is_open(self.today())]
        if not rows:
            return Reply(send=[Screen(NO_OPEN)])
        keyboard = tuple((Button(short(r.question), f"pa:c:{r.id}"),) for r in rows)
        return Reply(send=[Screen(CLOSE_PICK, keyboard)])

    @staticmethod
    def _close_confirm(row: PollRow) -> Screen:
        if row.status != "open":
            return Screen(ALREADY_CLOSED)
        text = CLOSE_ASK.format(question=esc(row.question), key=esc(row.key))
        return Screen(text, ((Button(CONFIRM, f"pa:cy:{row.id}"), Button(CANCEL, f"pa:cn:{row.id}")),))

    async def _close_press(self, verb: str, poll_id: int) -> Reply:
        async with self.sessions() as session, session.begin():
            row = await store.get_poll(session, poll_id)
            if row is None:
                return Reply(notice=UNKNOWN_BUTTON)
            if verb == "c":
                return Reply(edit=self._close_confirm(row))
            if verb == "cn":
                return Reply(notice=KEPT, edit=Screen(KEPT))
            if not await store.close_poll(session, row.key):
                return Reply(notice=ALREADY_CLOSED, edit=Screen(ALREADY_CLOSED))
            return Reply(notice="Closed.", edit=Screen(CLOSED_DONE.format(question=esc(row.question))))

    # -- community links --------------------------------------------------------------------------------
    async def _invite(self, args: str) -> Reply:
        name = " ".join(args.split())
        if not name or not slug(name):
            return Reply(send=[Screen(esc(INVITE_USAGE))])
        if len(name) > NAME_MAX:
            return Reply(send=[Screen(esc(INVITE_NAME_LONG))])
        async with self.sessions() as session, session.begin():
            source = await make_source(session, name, self.today())
            code, stored_name = source.code, source.name
        link = start_link(self.bot_username(), code)
        return Reply(send=[Screen(INVITE_DONE.format(name=esc(stored_name), link=esc(link), code=esc(code)))])

    async def _sources(self) -> Reply:
        """The export's start-link poll: what finished and did not finish, per link, as `medlegal export` has it."""
        k = effective_k(self.k_min())
        async with self.sessions() as session:
            links = await sources.source_stats(session)
            figures = await published(session, self.zone, k, self.today(), SOURCE_POLL)
        if not links:
            return Reply(send=[Screen(NO_SOURCES)])
        lines = [SOURCES_HEADER.format(k=k, period=esc(figures.period))]
        for s in links:
            done, going = figures.shown(SOURCE_POLL, s.code), figures.shown(SOURCE_POLL, s.code + OPEN)
            started = f"{done + going:,}" if done is not None and going is not None else "withheld"
            lines.append(
                f"• <b>{esc(s.name)}</b> (<code>{esc(s.code)}</code>, since {s.created_on.isoformat()}): "
                f"started {esc(started)} · finished {esc(figures.text(SOURCE_POLL, s.code))} · "
                f"not finished yet {esc(figures.text(SOURCE_POLL, s.code + OPEN))}"
            )
        lines.append(f"No start link, finished: {esc(figures.text(SOURCE_POLL, NO_LINK))}")
        return Reply(send=[Screen("\n".join(lines))])
