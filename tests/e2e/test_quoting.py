"""Small hardening: user text quoted in errors stays text, feed names stay typeable ASCII,
/tz takes places only."""

from __future__ import annotations

from sqlmodel import select

from bot.db.models import Feed, User
from tests.e2e.harness import Harness, Person


async def tz_of(h: Harness, p: Person) -> str | None:
    async with h.svc.db.session() as s:
        row = (await s.exec(select(User).where(User.id == p.id))).first()
    return row.tz if row is not None else None


async def test_markup_typed_by_a_user_is_quoted_back_as_text(h: Harness) -> None:
    alice = h.person("Alice")
    await alice.send("/tz <b>Mars</b>")
    assert "<b>Mars</b>" in alice.last_text, alice.transcript
    assert not any(e.get("type") == "bold" for e in alice.last.entities or [])
    await alice.send("/buy 10 <i>btc</i>")
    assert "I don't understand '<i>btc</i>' here." in alice.last_text, alice.transcript
    assert not any(e.get("type") == "italic" for e in alice.last.entities or [])
    await alice.send("/tz &lt;code&gt;")  # an entity typed as such is shown as typed
    assert "&lt;code&gt;" in alice.last_text, alice.transcript
    await alice.send("/price <code>x</code>")
    assert "I don't understand '<code>x</code>' here." in alice.last_text, alice.transcript


async def test_tz_refuses_files_of_the_zone_database_that_are_not_places(h: Harness) -> None:
    alice = h.person("Alice")
    await alice.send("/tz Europe/Berlin")
    assert "Europe/Berlin" in alice.last_text
    for name in ("localtime", "Factory", "posixrules", "LOCALTIME"):
        await alice.send(f"/tz {name}")
        assert "is not a place's time zone" in alice.last_text, alice.transcript
        assert await tz_of(h, alice) == "Europe/Berlin", name


async def test_a_default_feed_name_keeps_only_ascii_letters_and_digits(h: Harness) -> None:
    admin = h.person("Alice")
    # Cyrillic "Т" and "а", a superscript two, a fullwidth digit, an emoji
    group = h.group("Тrаders² ３ 🚀 Club", [admin], [admin], bot_admin=True)
    await admin.send("/feed on", chat=group)
    async with h.svc.db.session() as s:
        feed = (await s.exec(select(Feed).where(Feed.chat_id == group.id))).one()
    assert feed.name == "rdersclub", feed.name
    other = h.group("Сигналы", [admin], [admin], bot_admin=True)  # nothing ASCII: a numbered name
    await admin.send("/feed on", chat=other)
    async with h.svc.db.session() as s:
        feed = (await s.exec(select(Feed).where(Feed.chat_id == other.id))).one()
    assert feed.name.startswith("feed") and feed.name[4:].isdigit(), feed.name
