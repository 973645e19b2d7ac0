"""What the bot tells a group's admins about its rights there (privacy mode, deleting)."""

from __future__ import annotations

from bot.chats import rights_advice


def test_an_admin_with_delete_rights_has_nothing_to_say() -> None:
    assert rights_advice("TradeBot", reads_all=False, status="administrator",
                         can_delete=True) is None


def test_a_member_bot_in_privacy_mode_explains_both_gaps_and_the_fix() -> None:
    text = rights_advice("TradeBot", reads_all=False, status="member", can_delete=False)
    assert text is not None
    assert "free-text signals won't reach me" in text and "can't delete API keys" in text
    assert "Add admin → @TradeBot" in text and "/signal@TradeBot" in text
    assert len(text) < 400  # one short message


def test_privacy_off_but_not_admin_only_misses_deleting() -> None:
    text = rights_advice("TradeBot", reads_all=True, status="member", can_delete=False)
    assert text is not None and "can't delete API keys" in text
    assert "free-text" not in text


def test_an_admin_without_delete_messages_is_told_which_switch() -> None:
    text = rights_advice("TradeBot", reads_all=False, status="administrator", can_delete=False)
    assert text is not None and "without “Delete messages”" in text
