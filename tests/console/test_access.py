"""Who may open the console and change things: token/PIN, cross-site requests, host names."""
import pytest

from agent.config import check_text
from agent.console.access import Access
from tests.console.test_alerts import raise_alert


def test_binding_beyond_loopback_without_a_token_is_refused():
    problems = check_text('[console]\nbind = "0.0.0.0"\n')
    assert len(problems) == 1 and "set token or token_file" in problems[0]
    assert check_text('[console]\nbind = "0.0.0.0"\ntoken = "4711"\n') == []
    assert check_text('[console]\nbind = "::1"\n') == []
    with pytest.raises(ValueError, match="needs a token"):
        Access(None, "192.168.1.20")


def test_token_required_when_bound_to_all_addresses(station):
    s = station(bind="0.0.0.0", token="4711")
    status, _, body = s.request("/")
    assert status == 401 and "Token or PIN" in body  # the login form, no data
    assert s.request("/api/state")[0] == 401
    assert s.request("/api/events")[0] == 401
    status, _, state = s.request("/api/state", headers={"Authorization": "Bearer 4711"})
    assert status == 200 and state["station"] == "ct-1"
    assert s.request("/api/state", headers={"Authorization": "Bearer 4712"})[0] == 401
    assert s.request("/healthz")[0] == 200  # monitoring needs no token


def test_login_sets_a_cookie_and_a_kiosk_url_carries_the_token_once(station):
    s = station(bind="0.0.0.0", token="4711")
    status, headers, _ = s.request("/?token=4711")
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "4711" not in cookie
    value = cookie.split(";")[0]
    assert s.request("/api/state", headers={"Cookie": value})[0] == 200
    assert s.request("/api/state", headers={"Cookie": "alara_console=forged"})[0] == 401


def test_wrong_pins_are_rate_limited(station):
    s = station(bind="0.0.0.0", token="4711")
    for _ in range(5):
        assert s.request("/?token=0000")[0] == 401
    assert s.request("/?token=4711")[0] == 429  # even the right one, for a while


def test_wrong_bearer_tokens_are_rate_limited_too(station):
    """A script trying PINs on the API meets the same lock-out as the login form."""
    s = station(bind="0.0.0.0", token="4711")
    for n in range(5):
        assert s.request("/api/state", headers={"Authorization": f"Bearer 000{n}"})[0] == 401
    assert s.request("/api/state", headers={"Authorization": "Bearer 4711"})[0] == 429


def test_cross_site_posts_are_refused(station):
    s = station()
    alert = raise_alert(s, severity="warning")
    csrf = s.request("/api/state")[2]["csrf"]
    path = f"/api/alerts/{alert.id}/ack"
    body = {"by": "RT7", "reason": "large patient"}
    own = s.url
    refused = [
        {"Origin": "http://evil.example", "X-CSRF-Token": csrf},
        {"Sec-Fetch-Site": "cross-site", "X-CSRF-Token": csrf},
        {"Origin": "null", "X-CSRF-Token": csrf},
        {"Origin": own},  # no CSRF token
        {"Origin": own, "X-CSRF-Token": "guess"},
    ]
    for headers in refused:
        status, _, answer = s.request(path, "POST", body, headers)
        assert status == 403, (headers, answer)
    assert s.outbox("ack") == []
    status, _, answer = s.request(path, "POST", body, {"Origin": own, "Sec-Fetch-Site": "same-origin",
                                                       "X-CSRF-Token": csrf})
    assert status == 200 and answer["alert"]["ack"]["by"] == "RT7"
    assert [a["alert_id"] for a in s.outbox("ack")] == [alert.id]


def test_bearer_clients_need_no_csrf_token_but_still_no_foreign_origin(station):
    s = station(bind="0.0.0.0", token="4711")
    alert = raise_alert(s, severity="warning")
    bearer = {"Authorization": "Bearer 4711"}
    path = f"/api/alerts/{alert.id}/ack"
    assert s.request(path, "POST", {"by": "RT7"}, dict(bearer, Origin="http://evil.example"))[0] == 403
    assert s.request(path, "POST", {"by": "RT7"}, bearer)[0] == 200


def test_dns_rebinding_is_refused_on_loopback(station):
    s = station()
    assert s.request("/api/state", headers={"Host": "evil.example:8377"})[0] == 421
    assert s.request("/api/state", headers={"Host": f"localhost:{s.console.port}"})[0] == 200
