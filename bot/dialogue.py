"""The conversation, independent of the transport: a command, a button press or a text in, screens out.

Telegram (`bot.handlers`) and the console (`bot.console`) both drive this class, so the physician gets the
same flow everywhere. State lives in the database: an event loads the physician's session under a row lock,
applies one engine move, saves, and then says what to show. The usual tap skips the lock: it saves its move as a
compare-and-set of the session's turn (`_press_unlocked`), starting from the flow this process last saw when it
has one (a cache the compare-and-set checks, not state of its own).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot import roadmap_view, texts
from bot.calendar_file import ics_bytes, ics_filename
from bot.exam_calendar import as_sitting, stored_sittings
from bot.known_flows import KnownFlows
from bot.screens import Button, Document, Keyboard, Reply, Screen, esc
from bot.settings import Settings
from bot.update_guard import claim_for_statement, claimed_by_statement
from bot.update_order import CURRENT_UPDATE, is_late
from db import outbox, sources
from db import progress as progress_store
from db import repository as repo
from db.engine import borrowed
from db.models import User
from flows.conditions import Answer
from flows.definition import Question
from flows.engine import FlowEngine, FlowError, FlowState, StaleAnswer, restore
from flows.recommend import Recommendation
from flows.roadmap import Roadmap, build_roadmap
from flows.sittings import Sitting

T = TypeVar("T")

__all__ = ["Button", "Dialogue", "Document", "Keyboard", "Plugin", "Press", "Reply", "Screen", "parse_press"]


@dataclass(frozen=True)
class _Finished:
    """The last answer saved, its roadmap still to show (`Dialogue._finished`)."""

    before: FlowState
    after: FlowState
    key: str
    recommendation: Recommendation
    previous_path: str | None


@dataclass(frozen=True)
class Press:
    verb: str
    turn: int
    args: tuple[str, ...]


# verb -> number of arguments after the turn. a: answer, t: toggle, d: done (multi), m: set multi and confirm,
# b: back, e: edit an answer, s: summary, r: recommendation, c: continue (resume), n: new flow (start over),
# g: the full roadmap, k: the roadmap's calendar file, u/v: exam reminders on/off,
# R: a reminder message's own buttons ("R:0:open", "R:0:stop"; reminders are not tied to a turn).
_VERBS = {
    "a": 2,
    "t": 2,
    "d": 1,
    "m": 2,
    "b": 0,
    "e": 1,
    "s": 0,
    "r": 0,
    "c": 0,
    "n": 0,
    "g": 0,
    "k": 0,
    "u": 0,
    "v": 0,
    "R": 1,
}
_MOVES = frozenset("atmd")
"""The verbs that answer or tick within the current question: the presses the unlocked tap may take."""
_ARG = re.compile(r"^[A-Za-z0-9_+]{1,40}$")
_MOVED_MEANWHILE = Reply()
"""`Dialogue._save_unlocked`: the session was not as seen (read it and try again)."""
_ERASE = "x"


def parse_press(data: str | None) -> Press | None:
    """Decode callback data; anything malformed (forged, truncated, from another bot version) is None."""
    if not data or len(data.encode()) > 64:
        return None
    parts = data.split(":")
    verb = parts[0]
    if verb == _ERASE and len(parts) == 3 and _ARG.match(parts[1]) and parts[2] in {"y", "n"}:
        return Press(_ERASE, 0, (parts[1], parts[2]))
    if verb not in _VERBS or len(parts) != 2 + _VERBS[verb] or not parts[1].isdigit() or len(parts[1]) > 12:
        return None
    args = tuple(parts[2:])
    if not all(_ARG.match(a) for a in args):
        return None
    return Press(verb, int(parts[1]), args)


def _norm(text: str) -> str:
    """Compare typed text with option labels, ignoring case, marks and surrounding punctuation."""
    return re.sub(r"[^\w&/+-]+", " ", text.casefold()).strip()


class Plugin(Protocol):
    """A feature with its own commands and buttons (admin tools, ...), routed to by `Dialogue`.

    `verbs` are the callback-data prefixes (the part before the first ":") the plugin owns; `text` may claim a
    free-text message (an admin answering the plugin's prompt) by returning a Reply, or pass with None.
    """

    commands: frozenset[str]
    verbs: frozenset[str]

    async def command(self, user_id: int, name: str, args: str) -> Reply: ...

    async def press(self, user_id: int, data: str) -> Reply: ...

    async def text(self, user_id: int, text: str) -> Reply | None: ...


class Dialogue:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        engine: FlowEngine | None = None,
        plugins: Iterable[Plugin] = (),
        settings: Settings | None = None,
        *,
        unlocked_tap: bool = True,
    ) -> None:
        self.sessions = sessions
        bind = sessions.kw.get("bind")
        self.unlocked = bind if isinstance(bind, AsyncEngine) and unlocked_tap else None
        """The engine whose pooled connections the unlocked tap (`_press_unlocked`) borrows. It runs its statements
        on the driver's connection outside SQLAlchemy's transactions: on PostgreSQL each one commits by itself
        (`db.engine.DriverStatement`), on SQLite each save is one transaction in one call on the sqlite3 connection
        (`db.engine.on_sqlite`). None with `unlocked_tap=False`: every press the locked way, the reference
        `tests/test_unlocked_tap.py` holds the unlocked tap to."""
        self.known = KnownFlows()
        self.settings = settings or Settings.model_construct()
        self.engine = engine or FlowEngine()
        self.defn = self.engine.defn
        self.plugins = tuple(plugins)

    def _plugin_for_command(self, name: str) -> Plugin | None:
        return next((p for p in self.plugins if name in p.commands), None)

    def _plugin_for_press(self, data: str | None) -> Plugin | None:
        verb = (data or "").split(":", 1)[0]
        return next((p for p in self.plugins if verb in p.verbs), None)

    async def _tx(self, work: Callable[[AsyncSession], Awaitable[T]], user_id: int | None = None) -> T:
        """Run `work` in a transaction; a physician's flows seen by the unlocked tap are forgotten first, as the
        work may change them (the tap would only find out by a failed save). Work that opens or shows a flow puts
        it back as the next tap's guess: should the transaction then roll back, that guess fails its save."""
        if user_id is not None:
            self.known.forget(user_id)
        async with self.sessions() as session, session.begin():
            return await work(session)

    # -- entry points -----------------------------------------------------------------------------------
    async def command(self, user_id: int, name: str, args: str = "") -> Reply:
        name = name.lower()
        if name == "help":
            return Reply(send=[Screen(texts.HELP)])
        if name == "privacy":
            return Reply(send=[Screen(texts.PRIVACY)])
        if name == "delete_me":
            return await self._tx(lambda s: self._confirm_erase(s, user_id))
        plugin = self._plugin_for_command(name)
        if plugin is not None:
            return await plugin.command(user_id, name, args)
        handlers = {
            "start": self._start,
            "restart": self._restart,
            "cancel": self._cancel,
            "roadmap": self._roadmap,
            "remind": self._remind,
            "stop_reminders": self._stop_reminders,
        }
        handler = handlers.get(name)
        if handler is None:
            return Reply(send=[Screen(texts.UNKNOWN_COMMAND)])

        async def run(session: AsyncSession) -> Reply:
            await repo.lock_user(session, user_id)
            if name == "start" and _ARG.match(args.strip()):  # /start CODE from a community start link
                await sources.attribute(session, user_id, args.strip().lower(), self.settings.current_date())
            return await handler(session, user_id)

        return await self._tx(run, user_id)

    async def press(self, user_id: int, data: str | None) -> Reply:
        plugin = self._plugin_for_press(data)
        if plugin is not None and data is not None and len(data.encode()) <= 64:
            return await plugin.press(user_id, data)
        press = parse_press(data)
        if press is not None and press.verb == _ERASE:
            return await self._tx(lambda s: self._erase(s, user_id, press.args[0], press.args[1] == "y"), user_id)
        if press is not None and press.verb in _MOVES and self.unlocked is not None:
            unlocked = await self._press_unlocked(self.unlocked, user_id, press)
            if unlocked is not None:
                return unlocked

        async def run(session: AsyncSession) -> Reply:
            flow = await repo.lock_flow(session, user_id)
            if press is None:
                return await self._resync(session, user_id, texts.UNKNOWN_BUTTON)
            return await self._press(session, user_id, press, flow or await repo.latest_flow(session, user_id))

        return await self._tx(run, user_id)

    async def text(self, user_id: int, text: str | None) -> Reply:
        if text is not None:
            for plugin in self.plugins:
                claimed = await plugin.text(user_id, text)
                if claimed is not None:
                    return claimed

        async def run(session: AsyncSession) -> Reply:
            return await self._text(session, user_id, text, await repo.lock_flow(session, user_id))

        return await self._tx(run, user_id)

    async def _press_unlocked(self, unlocked: AsyncEngine, user_id: int, press: Press) -> Reply | None:
        """The usual tap, an answer or a tick that leaves the flow open, without a transaction: the session as this
        process last saw it (`bot.known_flows`) or else read without a lock, then saved by a compare-and-set of its
        turn together with the update's claim. One round trip to the database, two after a read, against BEGIN,
        the claim, the lock, the read, the save and COMMIT; the physician's order holds all the same, as the save
        applies only if nobody moved the session since it was seen. The last answer stores the recommendation in
        the same statement. None sends the press the locked way, which decides it under the lock as before: the
        first tap of a day (old claims are pruned), a press for another turn, an invalid one, an edit of an earlier
        answer, a session moved meanwhile, or an update claimed already."""
        claim = claim_for_statement()
        if claim is False:
            return None
        claim_day = claim[1] if isinstance(claim, tuple) and claim[0] == CURRENT_UPDATE.get() else None
        return await self._unlocked_move(unlocked, user_id, press, claim_day)

    async def _unlocked_move(
        self, unlocked: AsyncEngine, user_id: int, press: Press, claim_day: date | None
    ) -> Reply | None:
        async with borrowed(unlocked) as conn:
            try:
                known = self.known.get(user_id)
                if known is not None and known[0].turn == press.turn:
                    reply = await self._save_unlocked(conn, user_id, press, *known, claim_day)
                    if reply is not _MOVED_MEANWHILE:
                        return reply
                flow = await repo.read_active(conn, user_id)
                if flow is None or flow.turn != press.turn:
                    return None
                reply = await self._save_unlocked(conn, user_id, press, flow, self._state(flow), claim_day)
            except IntegrityError:  # the update was claimed already: the locked way says so
                return None
            return None if reply is _MOVED_MEANWHILE else reply

    async def _save_unlocked(
        self,
        conn: AsyncConnection,
        user_id: int,
        press: Press,
        flow: repo.StoredFlow,
        state: FlowState,
        claim_day: date | None,
    ) -> Reply | None:
        """Apply the press to the flow as seen and save it if nobody moved it since: the reply (for the last answer
        with its roadmap, read by the same statement), None when the move is not the unlocked tap's to make,
        `_MOVED_MEANWHILE` when the save found the session moved on."""
        try:
            moved = self._move(state, press)
        except FlowError:
            return None
        answers = _stored(moved)
        if not repo.saves_unmoved(flow, answers):
            return None
        rec = self.engine.recommend(moved.answers) if moved.complete else None
        completes = (
            None
            if rec is None
            else repo.Completion(user_id, rec.path.value, rec.qme_score, rec.ime_score, rec.as_dict())
        )
        saved = await repo.save_unmoved(
            conn,
            flow,
            current_key=moved.current,
            editing=moved.editing,
            draft=moved.draft,
            answers=answers,
            update_id=CURRENT_UPDATE.get(),
            claim=claim_day,
            completes=completes,
        )
        if saved is None:
            self.known.forget(user_id)
            return _MOVED_MEANWHILE
        if claim_day is not None:
            claimed_by_statement()
        turn = saved.flow.turn
        if rec is not None and saved.completed is not None:
            self.known.forget(user_id)
            inputs = saved.completed.inputs
            roadmap = self._roadmap_of(moved, rec, [as_sitting(row) for row in inputs.sittings], inputs.done)
            screen = self._roadmap_screen_of(roadmap, turn, inputs.subscribed)
            return self._finished(_Finished(state, moved, press.args[0], rec, saved.completed.previous_path), screen)
        self.known.put(user_id, saved.flow, moved)
        if press.verb == "t":
            return Reply(edit=self._question_screen(moved, turn))
        return self._moved_on(state, moved, press.args[0], turn)

    def _move(self, state: FlowState, press: Press) -> FlowState:
        """The engine move of an answering press (`_MOVES`)."""
        verb, args = press.verb, press.args
        if verb == "t":
            return self.engine.toggle(state, args[0], args[1])
        if verb == "d":
            return self.engine.confirm(state, args[0])
        value: Answer = args[1] if verb == "a" else tuple(args[1].split("+"))
        return self.engine.answer(state, args[0], value)

    # -- commands ---------------------------------------------------------------------------------------
    async def _start(self, session: AsyncSession, user_id: int) -> Reply:
        flow = await repo.active_flow(session, user_id)
        if flow is not None:
            state = self._state(flow)
            self.known.put(user_id, flow, state)
            if state.answers and not state.complete:
                progress = self.engine.progress(state)
                prompt = texts.RESUME_PROMPT.format(step=progress.step, total=progress.total)
                keyboard = ((Button(texts.RESUME, f"c:{flow.turn}"), Button(texts.START_OVER, f"n:{flow.turn}")),)
                return Reply(send=[Screen(prompt, keyboard)])
            if not state.complete:
                return Reply(send=[Screen(texts.WELCOME), self._question_screen(state, flow.turn)])
        latest = await repo.latest_flow(session, user_id)
        if latest is not None and latest.status == "completed":
            state = self._state(latest)
            if state.complete:
                return Reply(
                    send=[Screen(texts.WELCOME_BACK), await self._roadmap_screen(session, user_id, state, latest.turn)]
                )
        return await self._new_flow(session, user_id, texts.WELCOME)

    async def _roadmap(self, session: AsyncSession, user_id: int) -> Reply:
        latest = await repo.latest_flow(session, user_id)
        if latest is not None and latest.status == "completed":
            state = self._state(latest)
            if state.complete:
                return Reply(send=[await self._roadmap_screen(session, user_id, state, latest.turn)])
        return Reply(send=[Screen(texts.NO_ROADMAP)])

    async def _remind(self, session: AsyncSession, user_id: int) -> Reply:
        latest = await repo.latest_flow(session, user_id)
        if latest is None or latest.status != "completed" or not self._state(latest).complete:
            return Reply(send=[Screen(texts.NO_ROADMAP)])
        reply = await self._set_reminders(session, user_id, on=True, state=self._state(latest), turn=latest.turn)
        return Reply(send=[Screen(reply.notice or texts.REMINDERS_IME_ONLY)])

    async def _stop_reminders(self, session: AsyncSession, user_id: int) -> Reply:
        await outbox.set_subscribed(session, user_id, False)
        return Reply(send=[Screen(texts.REMINDERS_OFF)])

    async def _set_reminders(
        self, session: AsyncSession, user_id: int, *, on: bool, state: FlowState, turn: int
    ) -> Reply:
        """Subscribe or unsubscribe; only a roadmap with QME exam dates has anything to remind of."""
        roadmap = await self.roadmap(session, state, user_id=user_id)
        if on and not roadmap_view.has_exam_dates(roadmap):
            return Reply(notice=texts.REMINDERS_IME_ONLY, send=[Screen(texts.REMINDERS_IME_ONLY)])
        await outbox.set_subscribed(session, user_id, on)
        text = roadmap_view.reminder_status(True, self.settings) if on else texts.REMINDERS_OFF
        screen = await self._roadmap_screen(session, user_id, state, turn)
        return Reply(notice=text, edit=screen)

    async def _reminder_button(self, session: AsyncSession, user_id: int, action: str, flow: repo.StoredFlow) -> Reply:
        if action == "stop":
            await outbox.set_subscribed(session, user_id, False)
            return Reply(notice=texts.REMINDERS_OFF, send=[Screen(texts.REMINDERS_OFF)])
        if action == "open" and flow.status == "completed":
            return Reply(send=[await self._roadmap_screen(session, user_id, self._state(flow), flow.turn)])
        return Reply(send=[Screen(texts.NO_ROADMAP)])

    async def _restart(self, session: AsyncSession, user_id: int) -> Reply:
        return await self._new_flow(session, user_id, texts.STARTING_OVER)

    async def _cancel(self, session: AsyncSession, user_id: int) -> Reply:
        closed = await repo.close_active(session, user_id, "cancelled")
        return Reply(send=[Screen(texts.CANCELLED if closed else texts.NOTHING_TO_CANCEL)])

    async def _new_flow(self, session: AsyncSession, user_id: int, intro: str) -> Reply:
        state = self.engine.start()
        flow = await repo.start_flow(session, user_id, state.current, update_id=CURRENT_UPDATE.get())
        self.known.put(user_id, flow, state)  # the first answer's guess (checked by its save, as any guess)
        return Reply(send=[Screen(intro), self._question_screen(state, flow.turn)])

    @staticmethod
    def _erase_token(user: User) -> str:
        """Ties the confirm button to this user record, so an old button cannot erase a newer one."""
        return hashlib.sha256(f"{user.id}:{user.created_at.isoformat()}".encode()).hexdigest()[:12]

    async def _confirm_erase(self, session: AsyncSession, user_id: int) -> Reply:
        user = await repo.get_user(session, user_id)
        if user is None:
            return Reply(send=[Screen(texts.DELETE_NOTHING)])
        token = self._erase_token(user)
        keyboard = ((Button(texts.ERASE_YES, f"x:{token}:y"), Button(texts.ERASE_NO, f"x:{token}:n")),)
        return Reply(send=[Screen(texts.DELETE_CONFIRM, keyboard)])

    async def _erase(self, session: AsyncSession, user_id: int, token: str, confirmed: bool) -> Reply:
        user = await repo.get_user(session, user_id)
        if user is None:
            return Reply(notice=texts.DELETE_NOTHING, edit=Screen(texts.DELETE_NOTHING))
        if token != self._erase_token(user):
            return Reply(notice=texts.STALE_BUTTON, edit=Screen(texts.DELETE_KEPT))
        if not confirmed:
            return Reply(edit=Screen(texts.DELETE_KEPT))
        await repo.delete_user(session, user_id)
        return Reply(edit=Screen(texts.DELETE_DONE))

    # -- buttons ----------------------------------------------------------------------------------------
    async def _press(self, session: AsyncSession, user_id: int, press: Press, flow: repo.StoredFlow | None) -> Reply:
        """`flow`: the active session, else the latest one, read under the physician's lock."""
        if flow is None or flow.status not in {"active", "completed"}:
            return Reply(notice=texts.STALE_BUTTON, send=[Screen(texts.NO_FLOW)])
        if press.verb == "R":
            return await self._reminder_button(session, user_id, press.args[0], flow)
        if press.turn != flow.turn:
            return await self._resync(session, user_id, texts.STALE_BUTTON)
        state = self._state(flow)
        verb, args = press.verb, press.args
        try:
            if verb == "n":
                reply = await self._new_flow(session, user_id, texts.STARTING_OVER)
                return Reply(edit=_plain(texts.STARTING_OVER), send=reply.send[1:])
            if verb == "c":
                return Reply(edit=_plain(texts.RESUMED), send=[await self._screen(session, user_id, state, flow.turn)])
            if verb == "s":
                return Reply(send=[self._summary_screen(state, flow.turn)])
            if verb in {"u", "v"} and state.complete:
                return await self._set_reminders(session, user_id, on=verb == "u", state=state, turn=flow.turn)
            if verb == "g" and state.complete:
                return Reply(send=roadmap_view.detail_screens(await self.roadmap(session, state, user_id=user_id)))
            if verb == "k" and state.complete:
                document = await self._calendar(session, user_id, state)
                return Reply(notice=texts.CALENDAR_SENT, documents=[document])
            if verb == "r":
                return Reply(send=[await self._screen(session, user_id, state, flow.turn)])
            if verb == "t":
                moved = self._move(state, press)
                saved = await self._save(session, flow, moved)
                return Reply(edit=self._question_screen(moved, saved.turn))
            if verb == "b":
                moved = self.engine.back(state)
                saved = await self._save(session, flow, moved)
                return Reply(edit=await self._screen(session, user_id, moved, saved.turn))
            if verb == "e":
                moved = self.engine.edit(state, args[0])
                saved = await self._save(session, flow, moved)
                return Reply(edit=self._question_screen(moved, saved.turn))
            if verb in {"a", "m", "d"}:
                return await self._advance(session, user_id, flow, state, self._move(state, press), args[0])
        except StaleAnswer:
            return await self._resync(session, user_id, texts.STALE_BUTTON)
        except FlowError as exc:
            return Reply(notice=str(exc))
        return await self._resync(session, user_id, texts.UNKNOWN_BUTTON)

    async def _advance(
        self, session: AsyncSession, user_id: int, flow: repo.StoredFlow, before: FlowState, after: FlowState, key: str
    ) -> Reply:
        """Record an answer: the question's message keeps the choice, the next screen follows."""
        if not after.complete:
            saved = await self._save(session, flow, after)
            return self._moved_on(before, after, key, saved.turn)
        previous = await repo.latest_path(session, user_id)
        saved = await self._save(session, flow, after, status="completed")
        rec = self.engine.recommend(after.answers)
        await repo.add_recommendation(session, saved.id, rec.path.value, rec.qme_score, rec.ime_score, rec.as_dict())
        roadmap = await self._roadmap_screen(session, user_id, after, saved.turn, rec)
        return self._finished(_Finished(before, after, key, rec, previous), roadmap)

    def _finished(self, done: _Finished, roadmap: Screen) -> Reply:
        """The last answer recorded: the question keeps the choice, then a changed path is said and the roadmap
        follows."""
        rec = done.recommendation
        screens = []
        if done.previous_path is not None and done.previous_path != rec.path.value:
            screens.append(
                _plain(
                    texts.CHANGED_PATH.format(
                        before=esc(self.defn.rules.paths[done.previous_path].title),
                        after=esc(self.defn.rules.paths[rec.path.value].title),
                    )
                )
            )
        screens.append(roadmap)
        return Reply(edit=self._answered(done.before, done.after, done.key), send=screens)

    def _answered(self, before: FlowState, after: FlowState, key: str) -> Screen:
        """What the answered question's message turns into: the choice, kept in the chat."""
        question = self.defn.question(key)
        progress = self.engine.progress(before)
        return _plain(
            f"✓ <i>Step {progress.step} of {progress.total}</i> · {question.title}: "
            f"<b>{esc(question.label_of(after.answers[key]) if key in after.answers else '-')}</b>"
        )

    def _moved_on(self, before: FlowState, after: FlowState, key: str, turn: int) -> Reply:
        return Reply(edit=self._answered(before, after, key), send=[self._question_screen(after, turn)])

    # -- free text --------------------------------------------------------------------------------------
    async def _text(self, session: AsyncSession, user_id: int, text: str | None, flow: repo.StoredFlow | None) -> Reply:
        """`flow`: the active session read under the physician's lock, if any."""
        if flow is None:
            latest = await repo.latest_flow(session, user_id)
            if latest is not None and latest.status == "completed":
                return Reply(
                    send=[
                        Screen(texts.NO_FLOW_DONE),
                        await self._screen(session, user_id, self._state(latest), latest.turn),
                    ]
                )
            return Reply(send=[Screen(texts.NO_FLOW)])
        state = self._state(flow)
        if text is None:
            return Reply(send=[await self._screen(session, user_id, state, flow.turn, nudge=texts.NOT_TEXT)])
        question = self.engine.current_question(state)
        if question is None:
            return Reply(send=[await self._screen(session, user_id, state, flow.turn)])
        if is_late(flow.moved_by_update, flow.moved_at):
            return await self._resync(session, user_id, texts.LATE_MESSAGE)
        value = self._match(question, state, text)
        if value is None:
            nudge = texts.USE_BUTTONS_MULTI if question.multi else texts.USE_BUTTONS
            return Reply(send=[self._question_screen(state, flow.turn, nudge=nudge)])
        try:
            moved = self.engine.answer(state, question.key, value)
        except FlowError as exc:
            return Reply(send=[self._question_screen(state, flow.turn, nudge=str(exc))])
        reply = await self._advance(session, user_id, flow, state, moved, question.key)
        return Reply(send=reply.screens())

    def _match(self, question: Question, state: FlowState, text: str) -> Answer | None:
        """A typed answer that names an option (its label or key); several, comma-separated, for multi-choice."""
        options = self.engine.visible_options(question, state.answers)
        lookup: dict[str, str] = {}
        for option in options:
            lookup[_norm(option.label)] = option.key
            lookup[_norm(option.key)] = option.key
        pieces = [_norm(p) for p in (text.split(",") if question.multi else [text])]
        pieces = [p for p in pieces if p]
        if not pieces or any(p not in lookup for p in pieces):
            return None
        keys = [lookup[p] for p in pieces]
        return tuple(dict.fromkeys(keys)) if question.multi else keys[0]

    # -- screens ----------------------------------------------------------------------------------------
    async def _resync(self, session: AsyncSession, user_id: int, notice: str) -> Reply:
        """Answer an unusable press with a notice and the screen the physician should be looking at."""
        flow = await repo.active_flow(session, user_id) or await repo.latest_flow(session, user_id)
        if flow is None or flow.status not in {"active", "completed"}:
            return Reply(notice=notice, send=[Screen(texts.NO_FLOW)])
        return Reply(
            notice=notice, send=[await self._screen(session, user_id, self._state(flow), flow.turn, nudge=notice)]
        )

    def _state(self, flow: repo.StoredFlow) -> FlowState:
        current = None if flow.status == "completed" else flow.current_key
        return restore(self.engine, flow.answers, current, flow.editing, flow.draft)

    async def _save(
        self, session: AsyncSession, flow: repo.StoredFlow, state: FlowState, status: str = "active"
    ) -> repo.StoredFlow:
        return await repo.save_flow(
            session,
            flow,
            current_key=state.current,
            editing=state.editing,
            draft=state.draft,
            answers=_stored(state),
            status=status,
            update_id=CURRENT_UPDATE.get(),
        )

    async def _screen(
        self, session: AsyncSession, user_id: int, state: FlowState, turn: int, nudge: str | None = None
    ) -> Screen:
        if state.complete:
            screen = await self._roadmap_screen(session, user_id, state, turn)
            return Screen(f"<i>{esc(nudge)}</i>\n\n{screen.text}", screen.keyboard) if nudge else screen
        return self._question_screen(state, turn, nudge=nudge)

    def _question_screen(self, state: FlowState, turn: int, nudge: str | None = None) -> Screen:
        question = self.engine.current_question(state)
        assert question is not None
        progress = self.engine.progress(state)
        lines = []
        if nudge:
            lines += [f"<i>{esc(nudge)}</i>", ""]
        lines.append(f"<b>Step {progress.step} of {progress.total}</b> · {esc(question.title)}")
        lines.append(esc(question.text))
        if question.help:
            lines.append(f"<i>{esc(question.help)}</i>")
        previous = state.answers.get(question.key)
        buttons = []
        for option in self.engine.visible_options(question, state.answers):
            if question.multi:
                mark = "☑️ " if option.key in state.draft else "⬜ "
                buttons.append(Button(mark + option.label, f"t:{turn}:{question.key}:{option.key}"))
            else:
                mark = "✓ " if option.key == previous else ""
                buttons.append(Button(mark + option.label, f"a:{turn}:{question.key}:{option.key}"))
        rows = [tuple(buttons[i : i + question.columns]) for i in range(0, len(buttons), question.columns)]
        if question.multi:
            rows.append((Button(texts.DONE, f"d:{turn}:{question.key}"),))
        if state.editing and self.engine.first_unanswered(state.answers) is None:
            rows.append((Button(texts.BACK_TO_SUMMARY, f"b:{turn}"),))
        elif progress.step > 1:
            rows.append((Button(texts.BACK, f"b:{turn}"),))
        return Screen("\n".join(lines), tuple(rows))

    def _summary_screen(self, state: FlowState, turn: int) -> Screen:
        lines = [texts.SUMMARY_HEADER]
        buttons = []
        for question, label in self.engine.summary(state):
            lines.append(f"• {esc(question.title)}: <b>{esc(label)}</b>")
            buttons.append(Button(f"✏️ {question.title}", f"e:{turn}:{question.key}"))
        rows = [tuple(buttons[i : i + 2]) for i in range(0, len(buttons), 2)]
        rows.append((Button(texts.SHOW_RECOMMENDATION, f"r:{turn}"),))
        return Screen("\n".join(lines), tuple(rows))

    async def roadmap(
        self, session: AsyncSession, state: FlowState, rec: Recommendation | None = None, *, user_id: int | None = None
    ) -> Roadmap:
        """The roadmap recomputed for today, the current exam calendar and the progress steps the user ticked."""
        sittings = await stored_sittings(session)
        done = await progress_store.done_steps(session, user_id) if user_id is not None else {}
        return self._roadmap_of(state, rec, sittings, done)

    def _roadmap_of(
        self, state: FlowState, rec: Recommendation | None, sittings: list[Sitting], done: dict[str, date]
    ) -> Roadmap:
        rec = rec or self.engine.recommend(state.answers)
        today = self.settings.current_date()
        return build_roadmap(state.answers, today, sittings, defn=self.defn, recommendation=rec, done=done)

    async def _roadmap_screen(
        self, session: AsyncSession, user_id: int, state: FlowState, turn: int, rec: Recommendation | None = None
    ) -> Screen:
        roadmap = await self.roadmap(session, state, rec, user_id=user_id)
        subscribed = await outbox.is_subscribed(session, user_id) if roadmap_view.has_exam_dates(roadmap) else None
        return self._roadmap_screen_of(roadmap, turn, subscribed)

    def _roadmap_screen_of(self, roadmap: Roadmap, turn: int, subscribed: bool | None) -> Screen:
        """The roadmap's summary and buttons; the reminder status shows only where there are exam dates to remind
        of (`subscribed` is then needed)."""
        shown = subscribed if roadmap_view.has_exam_dates(roadmap) else None
        return Screen(
            roadmap_view.summary_text(roadmap, shown, self.settings),
            roadmap_view.roadmap_keyboard(roadmap, turn, shown),
        )

    async def _calendar(self, session: AsyncSession, user_id: int, state: FlowState) -> Document:
        roadmap = await self.roadmap(session, state, user_id=user_id)
        s = self.settings
        content = ics_bytes(
            roadmap.events,
            user_key=hashlib.sha256(f"medlegal:{user_id}".encode()).hexdigest()[:16],
            stamp=datetime.now(UTC),
            alarm_days=s.reminder_days,
            alarm_hour=s.reminder_hour,
            zone=s.zone,
        )
        return Document(ics_filename(roadmap.today), content, texts.CALENDAR_CAPTION)


def _stored(state: FlowState) -> dict[str, repo.AnswerValue]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in state.answers.items()}


def _plain(text: str) -> Screen:
    return Screen(text)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
