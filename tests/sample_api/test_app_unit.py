"""Unit tests of the sample API's pure parts: configuration, validation, routing.

Nothing here reaches PostgreSQL or Redis. The WSGI-level tests only use paths that
answer before any connection is needed (unknown paths, wrong methods, bad input,
/api/cpu, /api/delay, the debug endpoint); everything that needs the database is
covered by the integration tests against a real stack.
"""

import io
import json
import logging
import os
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from nself_sample_api import app

DB_URL = "postgresql://shop:s3cret-pw@127.0.0.1:45432/shop"
REDIS_URL = "redis://:redis-pw@127.0.0.1:46379/0"


def env(**extra: str) -> dict[str, str]:
    base = {"DATABASE_URL": DB_URL, "REDIS_URL": REDIS_URL, "NSELF_REPLICA": "api_1"}
    base.update(extra)
    return base


# -- config file parsing ---------------------------------------------------------------


def test_parse_config_text_reads_pairs_and_skips_comments() -> None:
    text = "\n".join(
        [
            "# secrets of the api",
            "",
            "DATABASE_URL=postgresql://u:p@h/db",
            "  REDIS_URL = redis://:x@127.0.0.1:1/0  ",
            "export NSELF_REPLICA=api_2",
        ]
    )
    assert app.parse_config_text(text) == {
        "DATABASE_URL": "postgresql://u:p@h/db",
        "REDIS_URL": "redis://:x@127.0.0.1:1/0",
        "NSELF_REPLICA": "api_2",
    }


def test_parse_config_text_keeps_hash_and_equals_inside_values() -> None:
    values = app.parse_config_text("A=pa#ss=word\nB='quoted value'\nC=\"x\"\nD=")
    assert values == {"A": "pa#ss=word", "B": "quoted value", "C": "x", "D": ""}


def test_parse_config_text_later_line_wins() -> None:
    assert app.parse_config_text("A=1\nA=2") == {"A": "2"}


@pytest.mark.parametrize("line", ["no equals sign", "1BAD=x", "=value", "A B=c"])
def test_parse_config_text_rejects_bad_lines_without_echoing_them(line: str) -> None:
    with pytest.raises(app.ConfigError) as info:
        app.parse_config_text(f"OK=1\n{line}", source="api.env")
    message = str(info.value)
    assert "api.env, line 2" in message
    assert line not in message


def test_read_config_file_missing(tmp_path) -> None:
    with pytest.raises(app.ConfigError, match="cannot read"):
        app.read_config_file(str(tmp_path / "absent.env"))


def test_read_config_file_warns_when_others_can_read_it(
    tmp_path, caplog, monkeypatch
) -> None:
    # configure_logging() stops propagation once an app has been created; undo that
    # here so caplog, which listens on the root logger, sees the record.
    monkeypatch.setattr(app.log, "propagate", True)
    path = tmp_path / "api.env"
    path.write_text("DATABASE_URL=x\n")
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="nself.api"):
        assert app.read_config_file(str(path)) == {"DATABASE_URL": "x"}
    assert "should be 0600" in caplog.text

    caplog.clear()
    os.chmod(path, 0o600)
    with caplog.at_level(logging.WARNING, logger="nself.api"):
        app.read_config_file(str(path))
    assert caplog.text == ""


def test_merge_settings_environment_wins_but_empty_counts_as_unset() -> None:
    merged = app.merge_settings(
        {"DATABASE_URL": "from-file", "REDIS_URL": "file-redis"},
        {"DATABASE_URL": "from-env", "REDIS_URL": ""},
    )
    assert merged["DATABASE_URL"] == "from-env"
    assert merged["REDIS_URL"] == "file-redis"


# -- load_config ---------------------------------------------------------------------


def test_load_config_defaults() -> None:
    config = app.load_config(env())
    assert config.database_url == DB_URL
    assert config.redis_url == REDIS_URL
    assert config.replica == "api_1"
    assert config.db_pool_size == 4
    assert config.debug is False
    assert config.prepare_threshold == 5
    assert config.products_cache_ttl == 5


def test_load_config_file_and_environment_override(tmp_path) -> None:
    path = tmp_path / "api.env"
    path.write_text(
        f"DATABASE_URL=postgresql://file:pw@127.0.0.1/x\nREDIS_URL={REDIS_URL}\n"
        "NSELF_DB_POOL_SIZE=9\n"
    )
    os.chmod(path, 0o600)
    config = app.load_config(
        {
            "NSELF_API_CONFIG": str(path),
            "DATABASE_URL": DB_URL,
            "NSELF_REPLICA": "api_3",
        }
    )
    assert config.database_url == DB_URL
    assert config.redis_url == REDIS_URL
    assert config.db_pool_size == 9
    assert config.replica == "api_3"


def test_config_repr_hides_secrets() -> None:
    text = repr(app.load_config(env()))
    assert "s3cret-pw" not in text
    assert "redis-pw" not in text
    assert "api_1" in text


@pytest.mark.parametrize("missing", ["DATABASE_URL", "REDIS_URL"])
def test_load_config_requires_urls(missing: str) -> None:
    settings = env()
    del settings[missing]
    with pytest.raises(app.ConfigError, match=missing):
        app.load_config(settings)


def test_load_config_bad_database_url_does_not_leak_it() -> None:
    bad = "host=127.0.0.1 password=s3cret-pw port"
    with pytest.raises(app.ConfigError) as info:
        app.load_config(env(DATABASE_URL=bad))
    assert "s3cret-pw" not in str(info.value)


def test_load_config_rejects_unknown_redis_scheme() -> None:
    with pytest.raises(app.ConfigError, match="REDIS_URL"):
        app.load_config(env(REDIS_URL="http://127.0.0.1:6379"))


@pytest.mark.parametrize("replica", ["api 1", "api_1\r\nX-Evil: 1", "-api", "a" * 64])
def test_load_config_rejects_replica_names_unfit_for_a_header(replica: str) -> None:
    with pytest.raises(app.ConfigError, match="NSELF_REPLICA"):
        app.load_config(env(NSELF_REPLICA=replica))


def test_load_config_replica_defaults_to_host_name(monkeypatch) -> None:
    monkeypatch.setattr(app.socket, "gethostname", lambda: "shop-host.local")
    settings = env()
    del settings["NSELF_REPLICA"]
    assert app.load_config(settings).replica == "shop-host.local"


@pytest.mark.parametrize("value", ["four", "0", "1000", "2.5"])
def test_load_config_rejects_bad_pool_size(value: str) -> None:
    with pytest.raises(app.ConfigError, match="NSELF_DB_POOL_SIZE"):
        app.load_config(env(NSELF_DB_POOL_SIZE=value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), ("0", False), ("off", False)],
)
def test_load_config_debug_flag(value: str, expected: bool) -> None:
    assert app.load_config(env(NSELF_API_DEBUG=value)).debug is expected


def test_load_config_rejects_unclear_debug_flag() -> None:
    with pytest.raises(app.ConfigError, match="NSELF_API_DEBUG"):
        app.load_config(env(NSELF_API_DEBUG="maybe"))


@pytest.mark.parametrize(("value", "expected"), [("off", None), ("0", 0), ("", 5)])
def test_load_config_prepare_threshold(value: str, expected: int | None) -> None:
    config = app.load_config(env(NSELF_DB_PREPARE_THRESHOLD=value))
    assert config.prepare_threshold == expected


# -- routing -------------------------------------------------------------------------


def make_router() -> app.Router:
    router = app.Router()
    router.add("GET", "/api/products", "list")
    router.add("GET", "/api/products/{id}", "one")
    router.add("POST", "/api/orders", "create")
    router.add("GET", "/api/orders", "query")
    return router


def test_router_resolves_methods_and_parameters() -> None:
    router = make_router()
    assert router.resolve("GET", "/api/products") == ("list", {})
    assert router.resolve("GET", "/api/products/17") == ("one", {"id": "17"})
    assert router.resolve("post", "/api/orders") == ("create", {})
    assert router.resolve("GET", "/api/orders") == ("query", {})


def test_router_answers_head_like_get() -> None:
    assert make_router().resolve("HEAD", "/api/products/3") == ("one", {"id": "3"})


@pytest.mark.parametrize(
    "path", ["/api/product", "/api/products/", "/api/products/1/2", "/", "/api"]
)
def test_router_unknown_path_is_404(path: str) -> None:
    with pytest.raises(app.HTTPError) as info:
        make_router().resolve("GET", path)
    assert info.value.status == 404


def test_router_wrong_method_is_405_with_allow() -> None:
    with pytest.raises(app.HTTPError) as info:
        make_router().resolve("DELETE", "/api/orders")
    assert info.value.status == 405
    assert ("Allow", "GET, HEAD, POST") in info.value.headers


def test_router_pattern_text_is_literal() -> None:
    router = app.Router()
    router.add("GET", "/api/a.b", "dot")
    with pytest.raises(app.HTTPError):
        router.resolve("GET", "/api/aXb")


# -- query strings -------------------------------------------------------------------


def test_parse_query_string() -> None:
    assert app.parse_query_string("limit=5&empty=") == {"limit": "5", "empty": ""}
    assert app.parse_query_string("") == {}


def test_parse_query_string_rejects_repeated_parameters() -> None:
    with pytest.raises(app.HTTPError) as info:
        app.parse_query_string("user_id=1&user_id=2")
    assert info.value.status == 400
    assert "user_id" in info.value.message


def test_query_int_default_and_value() -> None:
    assert app.query_int({}, "limit", default=20, minimum=1, maximum=100) == 20
    assert (
        app.query_int({"limit": ""}, "limit", default=20, minimum=1, maximum=100) == 20
    )
    assert app.query_int({"limit": " 7 "}, "limit", minimum=1, maximum=100) == 7
    assert app.query_int({"limit": "+7"}, "limit", minimum=1, maximum=100) == 7


def test_query_int_clamps_only_when_asked() -> None:
    query = {"limit": "1000"}
    assert app.query_int(query, "limit", minimum=1, maximum=100, clamp=True) == 100
    with pytest.raises(app.HTTPError, match="at most 100"):
        app.query_int(query, "limit", minimum=1, maximum=100)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({}, "is required"),
        ({"n": "abc"}, "must be an integer"),
        ({"n": "1.5"}, "must be an integer"),
        ({"n": "1e3"}, "must be an integer"),
        ({"n": "0"}, "at least 1"),
        ({"n": "-3"}, "at least 1"),
        ({"n": "9" * 30}, "must be an integer"),
    ],
)
def test_query_int_rejects(query: dict[str, str], message: str) -> None:
    with pytest.raises(app.HTTPError, match=message) as info:
        app.query_int(query, "n", minimum=1, maximum=100, clamp=True)
    assert info.value.status == 400
    assert "'n'" in info.value.message


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "1.0", str(2**63), ""])
def test_path_id_rejects(raw: str) -> None:
    with pytest.raises(app.HTTPError, match="product id must be a positive integer"):
        app.path_id({"id": raw}, "id", "product")


def test_path_id_accepts() -> None:
    assert app.path_id({"id": "42"}, "id", "product") == 42
    assert app.path_id({"id": str(2**63 - 1)}, "id", "product") == 2**63 - 1


# -- JSON bodies ---------------------------------------------------------------------


def body_environ(raw: bytes, *, length: str | None = None, chunked: bool = False):
    environ = {"wsgi.input": io.BytesIO(raw)}
    if chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    else:
        environ["CONTENT_LENGTH"] = str(len(raw)) if length is None else length
    return environ


def test_read_json_body_parses_objects_with_decimal_fractions() -> None:
    body = app.read_json_body(body_environ(b'{"order_id": 3, "amount": 10.10}'))
    assert body == {"order_id": 3, "amount": Decimal("10.10")}


def test_read_json_body_reads_chunked_bodies() -> None:
    assert app.read_json_body(body_environ(b'{"a": 1}', chunked=True)) == {"a": 1}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "must be a JSON object"),
        (b"   ", "must be a JSON object"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"{not json", "not valid JSON"),
        (b'{"a": NaN}', "not valid JSON"),
        (b'{"a": Infinity}', "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
    ],
)
def test_read_json_body_rejects(raw: bytes, message: str) -> None:
    with pytest.raises(app.HTTPError, match=message) as info:
        app.read_json_body(body_environ(raw))
    assert info.value.status == 400


def test_read_json_body_without_length_is_empty() -> None:
    environ = {"wsgi.input": io.BytesIO(b'{"a": 1}')}
    with pytest.raises(app.HTTPError, match="must be a JSON object"):
        app.read_json_body(environ)


def test_read_json_body_rejects_bad_content_length() -> None:
    with pytest.raises(app.HTTPError, match="Content-Length"):
        app.read_json_body(body_environ(b"{}", length="ten"))


def test_read_json_body_limits_size() -> None:
    raw = json.dumps({"pad": "x" * 200}).encode()
    with pytest.raises(app.HTTPError) as info:
        app.read_json_body(body_environ(raw), max_bytes=100)
    assert info.value.status == 413
    with pytest.raises(app.HTTPError) as info:
        app.read_json_body(body_environ(raw, chunked=True), max_bytes=100)
    assert info.value.status == 413


def test_body_int() -> None:
    assert app.body_int({"user_id": 5}, "user_id") == 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'user_id' is required"),
        ({"user_id": None}, "'user_id' is required"),
        ({"user_id": "5"}, "must be an integer"),
        ({"user_id": 5.0}, "must be an integer"),
        ({"user_id": Decimal("5.5")}, "must be an integer"),
        ({"user_id": True}, "must be an integer"),
        ({"user_id": 0}, "between 1 and"),
        ({"user_id": 2**63}, "between 1 and"),
    ],
)
def test_body_int_rejects(body: dict, message: str) -> None:
    with pytest.raises(app.HTTPError, match=message) as info:
        app.body_int(body, "user_id")
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12, Decimal("12.00")),
        (Decimal("12.5"), Decimal("12.50")),
        ("12.34", Decimal("12.34")),
        (" 0.01 ", Decimal("0.01")),
    ],
)
def test_body_amount(value, expected: Decimal) -> None:
    amount = app.body_amount({"amount": value}, "amount")
    assert amount == expected
    assert amount.as_tuple().exponent == -2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "is required"),
        (True, "must be a number"),
        ("ten", "must be a number"),
        ([1], "must be a number"),
        ("NaN", "positive amount"),
        ("Infinity", "positive amount"),
        (0, "positive amount"),
        (Decimal("-1"), "positive amount"),
        (Decimal("1.001"), "two decimals"),
        (Decimal("10000000000"), "at most"),
    ],
)
def test_body_amount_rejects(value, message: str) -> None:
    with pytest.raises(app.HTTPError, match=message) as info:
        app.body_amount({"amount": value}, "amount")
    assert info.value.status == 400


def test_body_order_lines_merges_duplicates_in_id_order() -> None:
    body = {
        "items": [
            {"product_id": 9, "quantity": 1},
            {"product_id": 3, "quantity": 2},
            {"product_id": 9, "quantity": 4},
        ]
    }
    assert app.body_order_lines(body) == [(3, 2), (9, 5)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'items' is required"),
        ({"items": []}, "non-empty list"),
        ({"items": {"product_id": 1}}, "non-empty list"),
        ({"items": [1]}, r"items\[0\] must be an object"),
        ({"items": [{"quantity": 1}]}, r"items\[0\]\.product_id is required"),
        (
            {"items": [{"product_id": 1, "quantity": 1}, {"product_id": 2}]},
            r"items\[1\]\.quantity is required",
        ),
        ({"items": [{"product_id": 1, "quantity": 0}]}, "between 1 and 1000"),
        (
            {"items": [{"product_id": 1, "quantity": 600}] * 2},
            "more than 1000",
        ),
        (
            {"items": [{"product_id": i, "quantity": 1} for i in range(1, 52)]},
            "at most 50",
        ),
    ],
)
def test_body_order_lines_rejects(body: dict, message: str) -> None:
    with pytest.raises(app.HTTPError, match=message) as info:
        app.body_order_lines(body)
    assert info.value.status == 400


def test_merge_lines() -> None:
    assert app.merge_lines([(5, 1), (2, 1), (5, 2)]) == [(2, 1), (5, 3)]
    assert app.merge_lines([]) == []


# -- small helpers -------------------------------------------------------------------


def test_encode_json_handles_money_and_times() -> None:
    payload = {
        "price": Decimal("12.30"),
        "at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "name": "Café",
    }
    assert json.loads(app.encode_json(payload)) == {
        "price": 12.3,
        "at": "2024-01-02T03:04:05+00:00",
        "name": "Café",
    }


def test_encode_json_refuses_unknown_types() -> None:
    with pytest.raises(TypeError):
        app.encode_json({"x": object()})


def test_status_line() -> None:
    assert app.status_line(201) == "201 Created"
    assert app.status_line(422) == "422 Unprocessable Entity"
    assert app.status_line(599) == "599 Unknown"


def test_cpu_work_is_deterministic_and_depends_on_n() -> None:
    assert app.cpu_work(1000) == app.cpu_work(1000)
    assert app.cpu_work(1000) != app.cpu_work(1001)
    assert len(app.cpu_work(1)) == 16


# -- the WSGI application, on paths that need no database ----------------------------


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes):
        self.status = status
        self.code = int(status.split(maxsplit=1)[0])
        self.headers = dict(headers)
        self.body = body

    def json(self):
        return json.loads(self.body)


def call(
    application: app.Application,
    method: str,
    path: str,
    query: str = "",
    body: bytes | None = None,
) -> Answer:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(body or b""),
    }
    if body is not None:
        environ["CONTENT_LENGTH"] = str(len(body))
    captured: dict = {}

    def start_response(status, headers, exc_info=None):
        captured["status"] = status
        captured["headers"] = headers

    chunks = application(environ, start_response)
    return Answer(captured["status"], captured["headers"], b"".join(chunks))


@pytest.fixture
def api() -> app.Application:
    return app.Application(app.load_config(env(NSELF_REPLICA="api_7")))


@pytest.fixture
def debug_api() -> app.Application:
    return app.Application(app.load_config(env(NSELF_API_DEBUG="1")))


def test_unknown_path_is_json_404_with_replica(api) -> None:
    answer = call(api, "GET", "/nowhere")
    assert answer.code == 404
    assert answer.headers["X-Replica"] == "api_7"
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Content-Length"] == str(len(answer.body))
    assert "error" in answer.json()


def test_wrong_method_is_405_with_replica(api) -> None:
    answer = call(api, "PUT", "/api/health")
    assert answer.code == 405
    assert answer.headers["Allow"] == "GET, HEAD"
    assert answer.headers["X-Replica"] == "api_7"


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("GET", "/api/products/abc", "", None),
        ("GET", "/api/users", "limit=x", None),
        ("GET", "/api/orders", "", None),
        ("POST", "/api/cart", "", b"{broken"),
        ("POST", "/api/cart", "", b'{"user_id": 1, "product_id": 2}'),
        ("POST", "/api/checkout", "", b"{}"),
        ("POST", "/api/payment", "", b'{"order_id": 1, "amount": "x"}'),
        ("POST", "/api/orders", "", b'{"user_id": 1}'),
        ("GET", "/api/delay", "ms=20000", None),
    ],
)
def test_bad_input_is_400_before_any_database_work(
    api, method, path, query, body
) -> None:
    answer = call(api, method, path, query, body)
    assert answer.code == 400, answer.body
    assert answer.headers["X-Replica"] == "api_7"
    assert answer.json()["error"]
    # Validation failed before a connection was needed, so none was opened.
    assert api._pool is None


def test_cpu_endpoint(api) -> None:
    answer = call(api, "GET", "/api/cpu", "n=500")
    assert answer.code == 200
    data = answer.json()
    assert data["n"] == 500
    assert data["result"] == app.cpu_work(500)
    assert data["replica"] == "api_7"


def test_cpu_endpoint_caps_n(api, monkeypatch) -> None:
    # A small cap keeps the test fast; the endpoint reads the cap at call time.
    monkeypatch.setattr(app, "CPU_MAX_N", 10)
    answer = call(api, "GET", "/api/cpu", "n=999999999")
    assert answer.code == 200
    assert answer.json()["n"] == 10


def test_delay_endpoint(api) -> None:
    answer = call(api, "GET", "/api/delay", "ms=0")
    assert answer.code == 200
    assert answer.json()["requested_ms"] == 0


def test_head_has_headers_but_no_body(api) -> None:
    answer = call(api, "HEAD", "/api/delay", "ms=0")
    assert answer.code == 200
    assert answer.body == b""
    assert int(answer.headers["Content-Length"]) > 0
    assert answer.headers["X-Replica"] == "api_7"


def test_debug_allocate_is_404_unless_enabled(api) -> None:
    for method in ("POST", "GET", "DELETE"):
        answer = call(api, method, "/api/debug/allocate", "mb=1")
        assert answer.code == 404
        assert answer.headers["X-Replica"] == "api_7"


def test_debug_allocate_holds_memory_until_released(debug_api) -> None:
    answer = call(debug_api, "POST", "/api/debug/allocate", "mb=2")
    assert answer.code == 200
    assert answer.json()["held_mb"] == 2
    answer = call(debug_api, "POST", "/api/debug/allocate", "mb=1")
    assert answer.json()["held_mb"] == 3
    assert sum(len(block) for block in debug_api._held) == 3 * app.MIB
    answer = call(debug_api, "DELETE", "/api/debug/allocate")
    assert answer.json()["released_mb"] == 3
    assert debug_api._held == []


def test_debug_allocate_validates_size(debug_api) -> None:
    assert call(debug_api, "POST", "/api/debug/allocate").code == 400
    assert call(debug_api, "POST", "/api/debug/allocate", "mb=0").code == 400
    assert call(debug_api, "POST", "/api/debug/allocate", "mb=99999999").code == 400


# -- the module attribute gunicorn looks up ------------------------------------------


def test_module_application_reads_environment_once(monkeypatch) -> None:
    monkeypatch.setattr(app, "_state", {})
    for name, value in env(NSELF_REPLICA="api_9").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("NSELF_API_CONFIG", raising=False)
    first = app.application
    assert isinstance(first, app.Application)
    assert first.config.replica == "api_9"
    monkeypatch.setenv("NSELF_REPLICA", "api_10")
    assert app.application is first


def test_module_application_fails_loudly_without_config(monkeypatch) -> None:
    monkeypatch.setattr(app, "_state", {})
    for name in ("DATABASE_URL", "REDIS_URL", "NSELF_API_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(app.ConfigError, match="DATABASE_URL"):
        _ = app.application


def test_module_has_no_other_lazy_attributes() -> None:
    with pytest.raises(AttributeError):
        _ = app.no_such_thing
