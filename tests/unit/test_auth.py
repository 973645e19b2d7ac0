"""BitMEX's official signature vectors, verbatim, plus the request builder."""

from __future__ import annotations

import json
from decimal import Decimal

from bot.exchange import auth

KEY = "LAqUlngMIQkIUjXMUreyu3qn"
SECRET = "chNOOS4KvNXR_Xq4k4c9qsfoKWvnDecLATCRlcBwyKDYnWgO"


def test_vector_get_instrument() -> None:
    sig = auth.signature(SECRET, "GET", "/api/v1/instrument", 1518064236, "")
    assert sig == "c7682d435d0cfe87c16098df34ef2eb5a549d4c5a3c2b1f0f77b8af73423bf00"


def test_vector_get_with_query() -> None:
    sig = auth.signature(
        SECRET,
        "GET",
        "/api/v1/instrument?filter=%7B%22symbol%22%3A+%22XBTM15%22%7D",
        1518064237,
        "",
    )
    assert sig == "e2f422547eecb5b3cb29ade2127e21b858b235b386bfa45e1c1756eb3383919f"


def test_vector_post_order() -> None:
    body = (
        '{"symbol":"XBTM15","price":219.0,'
        '"clOrdID":"mm_bitmex_1a/oemUeQ4CAJZgP3fjHsA","orderQty":98}'
    )
    sig = auth.signature(SECRET, "POST", "/api/v1/order", 1518064238, body)
    assert sig == "1749cd2ccae4aa49048ae09f0b95110cee706e0944e6a14ad0b3a8cb45bd336b"


def test_build_request_signs_the_bytes_it_sends() -> None:
    # The official query vector used json.dumps' default ", " / ": " separators;
    # passing that string through encode_query must reproduce the wire path.
    req = auth.build_request(
        "GET", "/instrument", query={"filter": json.dumps({"symbol": "XBTM15"})},
        key=KEY, secret=SECRET, expires=1518064237,
    )
    assert req.path == "/api/v1/instrument?filter=%7B%22symbol%22%3A+%22XBTM15%22%7D"
    assert req.headers["api-signature"] == (
        "e2f422547eecb5b3cb29ade2127e21b858b235b386bfa45e1c1756eb3383919f"
    )
    assert req.headers["api-key"] == KEY
    assert req.headers["api-expires"] == "1518064237"


def test_body_keeps_decimal_exact_and_drops_none() -> None:
    body = auth.encode_body(
        {"symbol": "XBTUSD", "price": Decimal("50000.10"), "orderQty": 100, "stopPx": None}
    )
    assert body == '{"symbol":"XBTUSD","price":50000.1,"orderQty":100}'
    assert json.loads(body)["price"] == 50000.1


def test_unsigned_request_has_no_auth_headers() -> None:
    req = auth.build_request("GET", "/instrument/active")
    assert "api-signature" not in req.headers
    assert req.body == ""


def test_ws_login_signature() -> None:
    args = auth.ws_login_args(KEY, SECRET, 1518064236)
    assert args[0] == KEY and args[1] == 1518064236
    assert args[2] == auth.signature(SECRET, "GET", "/realtime", 1518064236)
