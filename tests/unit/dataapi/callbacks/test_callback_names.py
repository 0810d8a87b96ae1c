"""Special-use host names in callback URLs: refused by ``check_url`` (so at submission and at every delivery
attempt), whatever the case, trailing dot or Unicode spelling, and whatever CIDRs are allow-listed."""

from __future__ import annotations

import pytest

from dataapi.callbacks.url import SPECIAL_USE, UnsafeCallbackUrl, check_url, normalise_name, special_use_reason

EVERY_CIDR = ["0.0.0.0/0", "::/0"]

REFUSED = [
    "localhost", "LOCALHOST", "LocalHost", "foo.localhost", "a.b.Foo.LOCALHOST", "localhost.",  "foo.localhost.",
    "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",  # full-width "localhost", IDNA-mapped to ASCII
    "foo\u3002localhost",  # an ideographic full stop is a dot under IDNA
    "localhost.localdomain", "printer.local", "metadata.google.internal", "x.INTERNAL", "x.invalid", "app.test",
    "router.home.arpa", "1.0.0.127.in-addr.arpa", "hidden.onion", "x.alt", "nas.lan", "wiki.corp", "box.home",
    "intranet", "git.intranet", "vault.private",
]
ACCEPTED = ["example.com", "hooks.example.com", "receiver.example", "localhost.example.com", "mylocal.io",
            "test.com", "internal.example.org", "notlocalhost", "arpa.net", "onion.services"]


@pytest.mark.parametrize("host", REFUSED)
@pytest.mark.parametrize("port", ["", ":3100"])
def test_special_use_names_are_refused_even_with_every_cidr_allowed(host, port):
    with pytest.raises(UnsafeCallbackUrl) as e:
        check_url(f"https://{host}{port}/hook", allow_cidrs=EVERY_CIDR)
    assert "special-use" in e.value.reason


@pytest.mark.parametrize("host", ACCEPTED)
def test_ordinary_names_that_merely_look_alike_are_accepted(host):
    assert check_url(f"https://{host}/hook").host == host.lower()


def test_the_reason_names_the_host_and_the_rule():
    with pytest.raises(UnsafeCallbackUrl) as e:
        check_url("https://Foo.LocalHost:8443/x")
    assert e.value.reason == "foo.localhost is a special-use name: the local host (RFC 6761)"
    assert "multicast DNS" in special_use_reason("printer.local")
    assert special_use_reason("example.com") is None


def test_every_listed_name_is_refused_bare_and_below():
    for top in SPECIAL_USE:
        assert special_use_reason(top) and special_use_reason(f"a.b.{top}") and special_use_reason(f"{top}.")


def test_an_exact_allowed_name_passes_and_only_that_name():
    allow = ["LocalHost."]  # compared as normalised: case and a trailing dot do not matter
    assert check_url("https://localhost:8443/h", allow_hosts=allow).url == "https://localhost:8443/h"
    assert check_url("https://LOCALHOST/h", allow_hosts=allow).host == "localhost"
    for url in ("https://foo.localhost/h", "https://localhost.localdomain/h", "https://app.test/h"):
        with pytest.raises(UnsafeCallbackUrl, match="special-use"):
            check_url(url, allow_hosts=allow)
    with pytest.raises(UnsafeCallbackUrl, match="must not end with a dot"):  # the other rules still apply
        check_url("https://localhost./h", allow_hosts=allow)


def test_allow_hosts_entries_are_normalised():
    assert normalise_name(" Receiver.Test. ") == "receiver.test"
    assert normalise_name("\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54") == "localhost"
    assert normalise_name("xn--\u00e9") == "xn--\u00e9"  # invalid IDNA: kept, so it matches no valid host
