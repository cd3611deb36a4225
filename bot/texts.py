"""Fixed words the bot says, in one place (Telegram HTML; the console strips the tags)."""

from __future__ import annotations

COMMANDS: tuple[tuple[str, str], ...] = (
    ("start", "Start or resume the decision flow"),
    ("roadmap", "Your roadmap, recomputed for today"),
    ("progress", "Your checklist: tick the steps you have done"),
    ("remind", "Turn on QME exam reminders"),
    ("estimate", "What QME and IME work could gross"),
    ("stop_reminders", "Turn off exam reminders"),
    ("polls", "Community polls: answer, see how peers answered"),
    ("restart", "Start the questions over"),
    ("cancel", "Stop the current questions"),
    ("help", "What this bot does and how to use it"),
    ("privacy", "What is stored about you and why"),
    ("delete_me", "Erase everything stored about you"),
)

WELCOME = (
    "<b>Medical-legal work: IME, California QME, or both?</b>\n"
    "I'll ask a few quick questions about your license, specialty, goals and time, then recommend a path "
    "with the reasons behind it. Tap a button to answer; /help lists what else I can do."
)

HELP = (
    "<b>How this works</b>\n"
    "I ask one question at a time; tap a button to answer. Use <b>⬅ Back</b> to go back a step. At the end "
    "you get a recommendation (QME, IME, hybrid, or not yet) and can change any single answer from the summary.\n\n"
    "<b>Commands</b>\n"
    "/start - start, or resume where you stopped\n"
    "/roadmap - your roadmap again, recomputed for today and the current exam calendar\n"
    "/progress - your checklist: tick each step as you finish it and see what comes next, with its date\n"
    "/remind, /stop_reminders - QME exam reminders on or off\n"
    "/estimate - what QME and IME work could gross a month and a year, with sources\n"
    "/polls - short community polls; after answering you see how peers answered (totals only)\n"
    "/restart - start the questions over\n"
    "/cancel - stop the current questions\n"
    "/privacy - what is stored about you and why\n"
    "/delete_me - erase everything stored about you\n"
    "/help - this message"
)

PRIVACY = (
    "<b>What I store and why</b>\n"
    "• Your Telegram user id, so I can keep your place and send you your answers back.\n"
    "• Your answers to the questions, the step you are on, and the recommendation I gave, with the times they "
    "were saved, so you can resume after a break and change an answer later.\n"
    "• Whether you want exam reminders, and the messages queued for you, so each goes out once.\n"
    "• Your poll answers (with the day only) and the community link you first arrived through, which are "
    "only ever counted in totals.\n"
    "• The progress steps you tick (with the day) and whether you want a weekly nudge, for your checklist.\n"
    "I do not store your name, username, phone number or the text of other messages.\n"
    "Aggregate statistics published by community admins never show an individual.\n\n"
    "/delete_me erases all of it at once."
)

DELETE_CONFIRM = (
    "This erases everything stored about you: your answers, your progress and your recommendations. "
    "It cannot be undone. Erase now?"
)
DELETE_DONE = "Done: everything stored about you has been erased. Send /start if you want to begin again."
DELETE_KEPT = "Nothing was erased."
DELETE_NOTHING = "There is nothing stored about you."

RESUME_PROMPT = "You were in the middle of the questions (step {step} of {total}). Pick up where you left off?"
RESUMED = "Picking up where you left off."
STARTING_OVER = "Starting over."
CANCELLED = (
    "Stopped. The answers you gave are kept (see /privacy); /start begins the questions again, /delete_me erases them."
)
NOTHING_TO_CANCEL = "There are no questions in progress. Send /start to begin."
NO_ROADMAP = "Your roadmap appears once you've answered the questions: send /start to begin or resume."
REMINDERS_OFF = "🔕 Exam reminders are off. /remind turns them back on."
REMINDERS_IME_ONLY = "Your roadmap has no QME exam dates, so there is nothing to remind you of."
REMINDER_OPEN = "📋 Open my roadmap"
REMINDER_STOP = "🔕 Stop reminders"
CALENDAR_CAPTION = "Your QME deadlines with reminders: open the file to add them to your calendar."
CALENDAR_SENT = "Calendar file on its way."
WELCOME_BACK = "Welcome back. Here is your latest recommendation."

STALE_BUTTON = "That button is from an earlier message. Here is where we are."
LATE_MESSAGE = "That message reached me after a newer answer, so I did not use it. Here is where we are."
UNKNOWN_BUTTON = "I didn't recognise that button. Here is where we are."
NO_FLOW = "Send /start to begin the questions."
NO_FLOW_DONE = "Your recommendation is below: tap a button, or send /restart to answer the questions again."
USE_BUTTONS = "Please answer with one of the buttons below."
USE_BUTTONS_MULTI = "Tap the options that apply, then Done (or type them separated by commas)."
EDITED = "I only read new messages, not edits: please send your answer again or tap a button."
NOT_TEXT = "I can only read text and button taps."
UNKNOWN_COMMAND = "I don't know that command. /help lists what I can do."
PRIVATE_ONLY = "I work in private chats only: open a chat with me to get your recommendation."
ERROR = "Sorry, something went wrong on my side. Please try again in a moment; your answers are safe."
DB_UNAVAILABLE = (
    "I can't reach my database for a moment, so your last step was not saved. "
    "Please try again in a moment: tap the same button or send the same answer again."
)
CHANGED_PATH = "Your recommendation changed from <b>{before}</b> to <b>{after}</b>."

BACK = "⬅ Back"
BACK_TO_SUMMARY = "⬅ Back to summary"
DONE = "✅ Done"
RESUME = "▶ Resume"
START_OVER = "🔁 Start over"
REVIEW = "✏️ Review or change answers"
SHOW_RECOMMENDATION = "✅ Show my recommendation"
ERASE_YES = "Yes, erase everything"
ERASE_NO = "No, keep it"
SUMMARY_HEADER = "<b>Your answers</b> (tap one to change it)"
WHY = "<b>Why</b>"
WHY_NOT = "<b>Why not {path}</b>"
WHAT_WOULD_CHANGE = "<b>What would change it</b>"
