"""Telegram HTML checks of broadcast texts: clear problems for bad markup, nothing for good markup.

The property tests cross-check against the fake Bot API's own HTML parser: whatever `html_problems` accepts, the
server (which parses like Telegram) accepts too, with the same rendered text.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.telegram_html import MAX_LENGTH, html_problems, plain_text
from tests.fake_bot_api import _check_text

GOOD = [
    "Hello",
    "<b>bold</b> <strong>strong</strong> <i>i</i> <em>em</em> <u>u</u> <ins>ins</ins>",
    "<s>s</s> <strike>strike</strike> <del>del</del>",
    "<a href=\"https://www.dir.ca.gov/dwc/\">DWC</a> and <a href='tg://user?id=1'>you</a>",
    "<code>x = 1</code>",
    '<pre><code class="language-python">print("hi")</code></pre>',
    '<span class="tg-spoiler">secret</span> <tg-spoiler>also</tg-spoiler>',
    "<blockquote>quoted <b>bold</b></blockquote>",
    "<blockquote expandable>long quote</blockquote>",
    '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>',
    "<b>bold <i>italic <u>under</u></i></b>",
    "Q&A, 1 &lt; 2 &amp;&amp; 3 &gt; 2, &quot;quoted&quot;, &#8212; &#x2014;",
    "<B>upper-case tags</B>",
    "x" * MAX_LENGTH,
    "<b>" + "x" * MAX_LENGTH + "</b>",
]


@pytest.mark.parametrize("text", GOOD)
def test_good_markup_has_no_problems(text: str) -> None:
    assert html_problems(text) == []
    _check_text(text, "HTML", None)  # the fake server agrees


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<b>bold", "unclosed <b> tag"),
        ("<b><i>x</i>", "unclosed <b> tag"),
        ("<div>x</div>", "<div> is not a tag Telegram allows"),
        ("<br>", "<br> is not a tag Telegram allows"),
        ("<p>x</p>", "<p> is not a tag Telegram allows"),
        ("x</b>", "</b> has no opening <b> tag"),
        ("<b><i>x</b></i>", "</b> closes <b> while <i> inside it is still open: close <i> first"),
        ("1 < 2", "a bare < : write &lt; for a literal <"),
        ("<b/>", "<b/> is not allowed"),
        ("<span>x</span>", '<span> is allowed only as <span class="tg-spoiler">'),
        ("<a>x</a>", "<a> needs a link"),
        ('<a href="">x</a>', "<a> needs a link"),
        ("<tg-emoji>x</tg-emoji>", "<tg-emoji> needs a numeric emoji-id"),
        ("<code><b>x</b></code>", "<b> inside <code>: code and pre cannot hold other formatting"),
        ("<blockquote><blockquote>x</blockquote></blockquote>", "a <blockquote> inside another <blockquote>"),
        ('<a href="x"><a href="y">z</a></a>', "a link inside another link"),
        ("caf&eacute;", "&eacute; is not an entity Telegram knows"),
        ("&#0;", "&#0; is not a character"),
        ("&#xD800;", "&#xD800; is not a character"),
        ("<!-- note -->hi", "HTML comments are not allowed"),
        ("", "the message is empty"),
        ("   \n", "the message is empty"),
        ("<b> </b>", "the message is empty once the tags are removed"),
        ("x" * (MAX_LENGTH + 1), f"the message is {MAX_LENGTH + 1} characters long without its tags"),
        ("😀" * (MAX_LENGTH // 2 + 1), f"the message is {MAX_LENGTH + 2} characters long"),
    ],
)
def test_bad_markup_is_named(text: str, problem: str) -> None:
    problems = html_problems(text)
    assert any(p.startswith(problem) for p in problems), problems


def test_problems_say_the_line_in_a_long_message() -> None:
    assert html_problems("Hello\n\n<b>bold\nmore") == ["unclosed <b> tag (line 3)"]


def test_several_problems_are_listed_once_each_and_capped() -> None:
    assert html_problems("<div>a</div><div>b</div>") == [
        html_problems("<div>")[0],
    ]
    assert len(html_problems("".join(f"<x{i}>" for i in range(20)))) == 5


def test_plain_text_is_what_telegram_shows() -> None:
    assert plain_text('<b>Hi</b> &amp; <a href="https://x">bye</a> &#8212; Q&A') == "Hi & bye — Q&A"


# -- properties -------------------------------------------------------------------------------------------

_WORDS = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="<>&"), max_size=20)
_SIMPLE = ["b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "tg-spoiler"]


@st.composite
def _markup(draw: st.DrawFn, depth: int = 0) -> str:
    """Well-formed Telegram HTML: text, entities and nested allowed tags."""
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["text", "entity", "tag", "code", "link"] if depth < 3 else ["text", "entity"]))
        if kind == "text":
            parts.append(draw(_WORDS))
        elif kind == "entity":
            parts.append(draw(st.sampled_from(["&lt;", "&gt;", "&amp;", "&quot;", "&#8212;", "&#x1F600;"])))
        elif kind == "code":
            tag = draw(st.sampled_from(["code", "pre"]))
            parts.append(f"<{tag}>{draw(_WORDS)}</{tag}>")
        elif kind == "link":
            parts.append(f'<a href="https://example.org/{draw(st.integers(0, 99))}">{draw(_WORDS)}</a>')
        else:
            tag = draw(st.sampled_from(_SIMPLE))
            parts.append(f"<{tag}>{draw(_markup(depth + 1))}</{tag}>")
    return "".join(parts)


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_random_text_never_raises(text: str) -> None:
    problems = html_problems(text)
    assert isinstance(problems, list) and len(problems) <= 5
    assert all(isinstance(p, str) and p for p in problems)


@given(st.text(alphabet="<>/&;#abiuspreclodtgx-= \"'", max_size=80))
@settings(max_examples=500)
def test_tag_soup_never_raises_and_what_passes_telegram_accepts(text: str) -> None:
    if not html_problems(text):
        _check_text(text, "HTML", None)  # a lone "&" renders differently in the fake's parser, so no equality


@given(_markup().map(lambda m: "x" + m))
@settings(max_examples=300)
def test_generated_valid_markup_passes(text: str) -> None:
    assert html_problems(text) == []
    rendered, _ = _check_text(text, "HTML", None)
    assert rendered == plain_text(text)
