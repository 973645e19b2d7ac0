"""Log lines never carry the bot token, an API secret or a signature."""

from __future__ import annotations

import logging

import pytest

from bot import logs
from bot.logs import (
    REDACTED,
    RedactingFormatter,
    expect_secret,
    redact,
    register_secret,
    registered_count,
    setup_logging,
    stop_expecting,
)

TOKEN = "123456789:AAHfiqksKZ8WmR2zSjiQ7_v4TMAKdiHm9T0"
SIG = "1749cd2ccae4aa49048ae09f0b95110cee706e0944e6a14ad0b3a8cb45bd336b"


def test_token_secret_and_signature_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    secret = "chNOOS4KvNXR_Xq4k4c9qsfoKWvnDecLATCRlcBwyKDYnWgO"
    register_secret(secret)
    setup_logging(logging.DEBUG)
    fmt = RedactingFormatter("%(message)s")
    record = logging.LogRecord(
        "t", logging.ERROR, __file__, 1,
        "POST https://api.telegram.org/bot%s/sendMessage failed; secret=%s; api-signature: %s",
        (TOKEN, secret, SIG), None,
    )
    line = fmt.format(record)
    assert TOKEN not in line and secret not in line and SIG not in line
    assert line.count(REDACTED) == 3
    assert "sendMessage failed" in line  # the useful part survives


def test_secret_inside_a_traceback_is_redacted() -> None:
    secret = "another-very-secret-value-1234567"  # shaped like a secret: 32+ urlsafe
    register_secret(secret)
    fmt = RedactingFormatter("%(message)s")
    try:
        raise RuntimeError(f"boom with {secret}")
    except RuntimeError:
        import sys

        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = fmt.format(record)
    assert "boom with" in line and secret not in line


def test_root_handler_redacts_real_output(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(logging.INFO)
    logging.getLogger("bot.test").warning("calling %s", f"/bot{TOKEN}/getMe")
    err = capsys.readouterr().err
    assert "getMe" in err and TOKEN not in err


def test_unknown_secret_pasted_by_a_user_is_masked_but_ids_stay() -> None:
    fmt = RedactingFormatter("%(message)s")
    never_registered = "Xcha4TdBojqVrV2jSFDVUGe0JTkX1Sikr_EctphmnkSwIiWS"
    order_id = "eaf968c6-906b-4aaa-a32a-ab65d6e06ed7"
    record = logging.LogRecord("t", logging.DEBUG, __file__, 1,
                               "update from %s text='thanks' key id %s order %s",
                               ("2pR9e8Ds0r9z2mM-j52NiLZq", never_registered, order_id), None)
    line = fmt.format(record)
    assert never_registered not in line
    assert order_id in line and "2pR9e8Ds0r9z2mM-j52NiLZq" in line


@pytest.mark.parametrize("typed", [
    "2pR9e8Ds0r9z2mM-j52NiLZq Xcha4TdBojqVrV2jSFDVUGe0JTkX1Sikr_EctphmnkSwIiWS",
    "abc def",  # a space inside
    "short",  # under 40 characters
    "Kq7vXw2\\nzP9",  # an escaped newline in a logged repr
])
def test_the_rest_of_a_connect_line_is_masked_whatever_its_shape(typed: str) -> None:
    for head in ("/connect", "/connect testnet", "/Connect@MyBot mainnet"):
        line = redact(f"update text='{head} {typed}' entities=[]")
        assert line == f"update text='{head} {REDACTED}", line
    assert redact(f"'text': 'connect {typed}'") == f"'text': 'connect {REDACTED}"
    # words that merely contain the command, and a bare command, stay readable
    assert redact("/connections ok") == "/connections ok"
    assert redact("reply: No accounts yet. /connect testnet") == \
        "reply: No accounts yet. /connect testnet"
    assert redact("Cannot connect to host 127.0.0.1:80") == "Cannot connect to host 127.0.0.1:80"


def test_only_secret_shaped_strings_are_remembered() -> None:
    before = registered_count()
    for word in ("hello", "world", "s3cr3t", "abc def ghi jkl mno pqr stu vwx yz", "a" * 200):
        register_secret(word)
    assert registered_count() == before
    assert redact("hello world s3cr3t") == "hello world s3cr3t"
    shaped = "Zx81-qPoL_w2mNbVcXz19QaSdFgHjKl0"  # 32 characters: under the long-run rule
    register_secret(shaped)
    assert registered_count() == before + 1
    assert redact(f"key {shaped}.") == f"key {REDACTED}."
    assert redact(f"key x{shaped}") == f"key {REDACTED}"  # glued to more urlsafe text


def test_the_registry_is_bounded_and_forgets_the_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "_secrets", type(logs._secrets)())
    monkeypatch.setattr(logs, "_lengths", type(logs._lengths)())
    monkeypatch.setattr(logs, "MAX_SECRETS", 3)
    made = [f"{i:02d}{'Qw3rTy-U1oP_aSdF' * 2}" for i in range(5)]  # 34 characters each
    for value in made:
        register_secret(value)
    assert registered_count() == 3
    assert redact(made[0]) == made[0]  # forgotten
    assert all(redact(v) == REDACTED for v in made[2:])


def test_connect_flow_steps_are_masked_in_logged_updates_of_that_chat_only() -> None:
    expect_secret(4242, 60)
    try:
        getupdates = ("[{'update_id': 7, 'message': {'message_id': 9, 'from': {'id': 4242}, "
                      "'chat': {'id': 4242, 'type': 'private'}, 'text': 'ab\\'c d'}}, "
                      "{'update_id': 8, 'message': {'from': {'id': 77}, 'chat': {'id': 77}, "
                      "'text': 'hello'}}]")
        line = redact(getupdates)
        assert "ab" not in line and "'text': '[REDACTED]'" in line and "'hello'" in line
        obj = "Update(message=Message(chat=Chat(id=4242, type=<ChatType.PRIVATE>), text='k y'))"
        assert "k y" not in redact(obj)
        assert "k y" not in redact('{"chat": {"id": 4242}, "text": "k y"}')
    finally:
        stop_expecting(4242)
    assert "k y" in redact(obj)


def test_a_message_holding_a_split_secret_is_masked_in_any_dump() -> None:
    """What the chat guard deletes (a secret in two halves, each under the run mask's
    length) is masked too: PTB's repr, a dict repr and JSON all show the line break as \\n."""
    first, second = "Xq3vB8nR2kLm9PzT4wYc7HdF", "a6JsN1gQe5UuK0oZiV2bMx8R"
    for line in (f"Update(message=Message(text='keys: {first}\\n{second} ok thanks'))",
                 f"{{'text': 'keys: {first} {second} ok thanks'}}",
                 f'{{"caption": "keys: {first}\\n{second} ok thanks"}}'):
        out = redact(line)
        assert first not in out and second not in out, out
    plain = "Update(message=Message(text='Internationalization Counterrevolutionaries ok'))"
    assert redact(plain) == plain
