"""Log lines never carry the bot token, an API secret or a signature."""

from __future__ import annotations

import logging

import pytest

from bot.logs import REDACTED, RedactingFormatter, register_secret, setup_logging

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
    secret = "another-very-secret-value-123"
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
                               "update text='/connect testnet 2pR9e8Ds0r9z2mM-j52NiLZq %s' "
                               "order %s", (never_registered, order_id), None)
    line = fmt.format(record)
    assert never_registered not in line
    assert order_id in line and "2pR9e8Ds0r9z2mM-j52NiLZq" in line
