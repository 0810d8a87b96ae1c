"""Webhook delivery against a real HTTPS receiver on 127.0.0.1 (own CA, certificate for receiver.test), and the
SSRF checks of callback URLs. Only loopback is ever connected to: "public" addresses are only resolved/checked."""

from __future__ import annotations

import ipaddress
import socket
import time
from email.utils import formatdate

import pytest
from standardwebhooks import Webhook

from activities.delivery import deliver, retry_after_seconds
from dataapi.callbacks.url import UnresolvableHost, UnsafeCallbackUrl, check_url, forbidden_reason, resolve
from dataapi.callbacks.webhooks import new_secret, webhook_headers
from tests.support.receiver import Receiver, Reply

BODY = b'{"job_id":"j-1","status":"succeeded"}'
LOOPBACK = ["127.0.0.1/32"]
TEST_NAMES = ["receiver.test", "wrong.test", "nowhere.test"]  # special-use (.test): admitted by name, as operators can
PUBLIC_V4, PUBLIC_V6 = "93.184.215.14", "2606:4700::6810:84e5"  # resolved and checked, never connected to


# The receiver (tests/support/receiver.py) and DNS stub ------------------------------------------------------------

class StubResolver:
    """DNS at the edge of the world: answers from a table (or a sequence of answers) and counts the calls."""

    def __init__(self, *answers: list[str], names=("receiver.test",)):
        self.answers, self.names, self.calls = list(answers), names, []

    def __call__(self, host: str) -> list[str]:
        self.calls.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


@pytest.fixture
def ca(pki) -> str:
    return str(pki / "ca.pem")


async def _deliver(rx: Receiver, url: str | None = None, resolver=None, **kw):
    kw = {"allow_cidrs": LOOPBACK, "allow_hosts": TEST_NAMES, **kw}
    headers = kw.pop("headers", {"content-type": "application/json"})
    return await deliver(url or rx.url(), BODY, headers, resolver=resolver or StubResolver(["127.0.0.1"]), **kw)


# --- delivery --------------------------------------------------------------------------------------------

async def test_delivered_with_exact_body_headers_host_and_sni(receiver, ca):
    secret, resolver = new_secret(), StubResolver(["127.0.0.1"])
    headers = webhook_headers("msg_1", int(time.time()), BODY, [secret])
    attempt = await _deliver(receiver, receiver.url(path="/hook?job=1"), resolver, headers=headers, ca_bundle=ca)
    assert (attempt.outcome, attempt.status_code, attempt.error) == ("delivered", 200, None)
    assert attempt.duration_ms >= 0 and resolver.calls == ["receiver.test"]
    [got] = receiver.requests
    assert got.path == "/hook?job=1" and got.body == BODY
    assert got.headers["host"] == f"receiver.test:{receiver.port}"
    assert {k: got.headers[k] for k in headers} == headers
    assert receiver.sni == ["receiver.test"]  # the certificate (no IP SAN) was verified against the name
    Webhook(secret).verify(got.body, got.headers)


@pytest.mark.parametrize(("status", "outcome"), [(204, "delivered"), (500, "retry"), (404, "retry"), (410, "gone")])
async def test_status_outcomes(receiver, ca, status, outcome):
    receiver.replies.append(Reply(status))
    attempt = await _deliver(receiver, ca_bundle=ca)
    assert (attempt.outcome, attempt.status_code, attempt.retry_after_seconds) == (outcome, status, None)
    assert attempt.error == (None if outcome == "delivered" else f"HTTP {status}")


async def test_redirect_is_not_followed(receiver, ca):
    receiver.replies.append(Reply(302, {"location": receiver.url(path="/elsewhere")}))
    attempt = await _deliver(receiver, ca_bundle=ca)
    assert (attempt.outcome, attempt.status_code) == ("retry", 302)
    assert [r.path for r in receiver.requests] == ["/hook"]


@pytest.mark.parametrize(("status", "value", "expected"), [
    (429, "7", 7.0), (503, "120", 120.0), (429, "999999999", 86400.0), (500, "7", None), (429, "soon", None)])
async def test_retry_after(receiver, ca, status, value, expected):
    receiver.replies.append(Reply(status, {"retry-after": value}))
    attempt = await _deliver(receiver, ca_bundle=ca)
    assert (attempt.outcome, attempt.retry_after_seconds) == ("retry", expected)


def test_retry_after_http_date():
    assert 28 <= retry_after_seconds(formatdate(time.time() + 30, usegmt=True)) <= 30
    assert retry_after_seconds(formatdate(time.time() - 30, usegmt=True)) == 0.0


async def test_slow_receiver_times_out_within_the_timeout(receiver, ca):
    receiver.replies.append(Reply(delay=5))
    started = time.monotonic()
    attempt = await _deliver(receiver, ca_bundle=ca, timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert attempt.outcome == "retry" and attempt.status_code is None and "timed out" in attempt.error


async def test_large_response_is_not_read_to_the_end(receiver, ca):
    receiver.replies.append(Reply(body_size=10 * 1024 * 1024, chunk_delay=0.05))  # 8 s to send it all
    started = time.monotonic()
    attempt = await _deliver(receiver, ca_bundle=ca, max_response_bytes=65536)
    assert attempt.outcome == "delivered"
    assert time.monotonic() - started < 2


async def test_certificate_for_another_name_fails(receiver, ca):
    resolver = StubResolver(["127.0.0.1"], names=("wrong.test",))
    attempt = await _deliver(receiver, receiver.url("wrong.test"), resolver, ca_bundle=ca)
    assert attempt.outcome == "retry" and "certificate" in attempt.error.lower()
    assert receiver.requests == []


async def test_without_the_private_ca_tls_fails(receiver):
    attempt = await _deliver(receiver)
    assert attempt.outcome == "retry" and "CERTIFICATE_VERIFY_FAILED" in attempt.error
    assert receiver.requests == []


async def test_unresolvable_host_is_retried(receiver, ca):
    attempt = await _deliver(receiver, receiver.url("nowhere.test"), ca_bundle=ca)
    assert attempt.outcome == "retry" and "did not resolve" in attempt.error


# --- SSRF: refused before any connection -----------------------------------------------------------------

ENCODED = ["https://2130706433:{port}/", "https://0x7f.1:{port}/", "https://0177.0.0.1:{port}/",
           "https://127.1:{port}/", "https://127.0.1:{port}/", "https://0x7f000001:{port}/",
           "https://0x7f.0.0.1:{port}/", "https://127.000.000.001:{port}/", "https://127.0.0.1.:{port}/",
           "https://receiver.test.:{port}/", "https://[::]:{port}/", "https://[::ffff:127.0.0.1]:{port}/",
           "https://[fe80::1%25lo]:{port}/", "https://[::1%lo]:{port}/", "https://%31%32%37.0.0.1:{port}/",
           "https://receiver%2etest:{port}/", "https://receiver.test\\@evil.test:{port}/",
           "https://receiver.test\\:{port}/", "https://receiver.test :{port}/", "https://receiver.test:{port}/ x",
           "https://recei\tver.test:{port}/", "https://receiver.test:{port}/\n", "https://receiver.test\x00:{port}/",
           "https://１２７.０.０.１:{port}/", "https://receiver．test＠127.0.0.1:{port}/", "https://example.0x1:{port}/"]
UNSAFE = ["http://receiver.test:{port}/", "HTTP://receiver.test:{port}/", "ftp://receiver.test/",
          "https:receiver.test:{port}/", "//receiver.test:{port}/", "https://user@receiver.test:{port}/",
          "https://@receiver.test:{port}/", "https://user:pw@receiver.test:{port}/", "https:///hook",
          "https://:{port}/", "https://receiver.test:{port}/#frag", "https://receiver.test:0/",
          "https://receiver.test:65536/", "https://receiver.test:+443/", "https://receiver.test:/",
          "https://receiver.test:{port}:1/", "https://[::1/", "https://[v1.x]/", "https://a..b/",
          "https://" + "a" * 64 + ".test/", "https://a.test/" + "x" * 2048,
          "https://127.0.0.1:{port}/", "https://10.0.0.1/", "https://172.16.0.1/", "https://192.168.1.1/",
          "https://100.64.0.1/", "https://169.254.169.254/latest/meta-data/", "https://[::1]:{port}/",
          "https://[64:ff9b::7f00:1]:{port}/", "https://[2002:7f00:1::]:{port}/", "https://[fe80::1]/",
          "https://224.0.0.1/", "https://0.0.0.0:{port}/", "https://255.255.255.255/", "https://198.51.100.7/",
          "https://[fc00::1]/", "https://[fec0::1]/", "https://[ff02::1]/", "https://[2001:db8::1]/"]


@pytest.mark.parametrize("url", UNSAFE + ENCODED)
async def test_unsafe_urls_are_refused_before_dns_or_connect(receiver, ca, url):
    url, resolver = url.format(port=receiver.port), StubResolver(["127.0.0.1"])
    with pytest.raises(UnsafeCallbackUrl):
        check_url(url)
    attempt = await _deliver(receiver, url, resolver, ca_bundle=ca, allow_cidrs=[])
    assert (attempt.outcome, attempt.status_code) == ("refused", None) and attempt.error
    assert resolver.calls == [] and receiver.requests == []


@pytest.mark.parametrize("url", ENCODED)
async def test_encoded_hosts_are_refused_even_when_every_range_is_allowed(receiver, ca, url):
    url, resolver = url.format(port=receiver.port), StubResolver(["127.0.0.1"])
    attempt = await _deliver(receiver, url, resolver, ca_bundle=ca, allow_cidrs=["0.0.0.0/0", "::/0"])
    assert attempt.outcome == "refused" and resolver.calls == [] and receiver.requests == []


PRIVATE = ["127.0.0.1", "127.9.9.9", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "100.64.0.1",
           "169.254.169.254", "0.0.0.0", "0.1.2.3",  # noqa: S104 "224.0.0.1", "255.255.255.255", "240.0.0.1", "192.0.2.1",
           "198.51.100.1", "203.0.113.1", "198.18.0.1", "192.0.0.1", "::", "::1", "::ffff:127.0.0.1", "::127.0.0.1",
           "::ffff:10.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b:1::a00:1", "2002:7f00:1::",
           "2002:a00:1::1", "2001:0:4136:e378:8000:63bf:f5ff:fffe", "fe80::1", "fe80::1%eth0", "fc00::1",
           "fd12:3456::1", "fec0::1", "ff02::1", "2001:db8::1", "100::1", "5f00::1"]


@pytest.mark.parametrize("address", PRIVATE)
async def test_names_resolving_to_forbidden_addresses_are_refused(receiver, ca, address):
    resolver = StubResolver([address])
    attempt = await _deliver(receiver, resolver=resolver, ca_bundle=ca, allow_cidrs=[])
    assert attempt.outcome == "refused" and str(ipaddress.ip_address(address.split("%")[0])) in attempt.error
    assert resolver.calls == ["receiver.test"] and receiver.requests == []


async def test_one_forbidden_address_among_public_ones_refuses(receiver, ca):
    resolver = StubResolver([PUBLIC_V4, "127.0.0.1", PUBLIC_V6])
    attempt = await _deliver(receiver, resolver=resolver, ca_bundle=ca, allow_cidrs=[])
    assert attempt.outcome == "refused" and "loopback" in attempt.error and receiver.requests == []


async def test_connection_goes_to_the_address_checked_at_each_attempt(receiver, ca):
    # Rebinding: the second answer is a loopback address nothing listens on and that is not allow-listed.
    resolver = StubResolver(["127.0.0.1"], ["127.0.0.2"])
    first = await _deliver(receiver, resolver=resolver, ca_bundle=ca)
    assert first.outcome == "delivered" and resolver.calls == ["receiver.test"]
    second = await _deliver(receiver, resolver=resolver, ca_bundle=ca)
    assert second.outcome == "refused" and resolver.calls == ["receiver.test"] * 2
    assert len(receiver.requests) == 1


# --- the checks on their own -----------------------------------------------------------------------------

def test_check_url_normalises():
    t = check_url("HTTPS://Bücher.Example:8443/a/ü?q=1")
    assert (t.host, t.port, t.path_and_query) == ("xn--bcher-kva.example", 8443, "/a/%C3%BC?q=1")
    assert t.url == "https://xn--bcher-kva.example:8443/a/%C3%BC?q=1"
    assert check_url("https://Example.com").url == "https://example.com/"
    assert check_url("https://example.com?x=1").path_and_query == "/?x=1"
    assert check_url("https://example.com:443/").url == "https://example.com/"
    v6 = check_url(f"https://[{PUBLIC_V6.upper()}]:8443/h")
    assert (v6.host, v6.url) == (PUBLIC_V6, f"https://[{PUBLIC_V6}]:8443/h")
    assert check_url(f"https://{PUBLIC_V4}/").host == PUBLIC_V4
    assert check_url("https://10.1.2.3/", allow_cidrs=["10.0.0.0/8"]).host == "10.1.2.3"


def test_unsafe_message_is_clear():
    with pytest.raises(UnsafeCallbackUrl, match=r"^unsafe callback URL: only https:// URLs are allowed$"):
        check_url("http://example.com/")


@pytest.mark.parametrize("address", PRIVATE)
def test_forbidden_reason_names_forbidden_addresses(address):
    assert forbidden_reason(ipaddress.ip_address(address.split("%")[0]))


@pytest.mark.parametrize("address", [PUBLIC_V4, "8.8.8.8", "1.1.1.1", PUBLIC_V6, "::ffff:8.8.8.8",
                                     "64:ff9b::808:808", "2002:808:808::1", "2001:0:4136:e378:8000:63bf:f7f7:f7f7"])
def test_forbidden_reason_allows_public_addresses(address):
    assert forbidden_reason(ipaddress.ip_address(address)) is None


def test_resolve_returns_the_checked_addresses_once():
    resolver = StubResolver([PUBLIC_V4, PUBLIC_V6, PUBLIC_V4], names=("example.com",))
    assert resolve(check_url("https://example.com/"), [], resolver) == [PUBLIC_V4, PUBLIC_V6]
    assert resolver.calls == ["example.com"]


def test_resolve_allow_list_admits_internal_receivers():
    resolver = StubResolver(["10.1.2.3", PUBLIC_V4], names=("internal.example",))
    assert resolve(check_url("https://internal.example/"), ["10.0.0.0/8"], resolver) == ["10.1.2.3", PUBLIC_V4]
    with pytest.raises(UnsafeCallbackUrl, match="private"):
        resolve(check_url("https://internal.example/"), ["192.168.0.0/16"], resolver)


def test_resolve_ip_literals_skip_dns():
    resolver = StubResolver([])
    assert resolve(check_url(f"https://{PUBLIC_V4}/"), [], resolver) == [PUBLIC_V4]
    assert resolver.calls == []


@pytest.mark.parametrize(("answer", "error"), [([], UnresolvableHost), (["127.1"], UnsafeCallbackUrl),
                                               (["not-an-ip"], UnsafeCallbackUrl)])
def test_resolve_rejects_empty_and_invalid_answers(answer, error):
    with pytest.raises(error):
        resolve(check_url("https://example.com/"), [], StubResolver(answer, names=("example.com",)))
    with pytest.raises(UnresolvableHost):
        resolve(check_url("https://nowhere.example/"), [], StubResolver(answer, names=("example.com",)))
