"""The egress policy: which URLs a workspace's model calls and webhooks may reach."""

import pytest

from governance.egress import EgressError, allowed_hosts_problems, egress_target, host_allowed, url_problem


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.8.9.10", "0.0.0.0", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254",
     "100.64.0.1", "224.0.0.1", "240.0.0.1", "[::1]", "[fe80::1]", "[fc00::1]", "[::ffff:127.0.0.1]",
     "[::ffff:169.254.169.254]"],
)  # fmt: skip
def test_it_refuses_loopback_link_local_private_and_reserved_addresses(settings, address):
    settings.KEEL_EGRESS_ALLOW_PRIVATE = []
    with pytest.raises(EgressError, match="loopback, link-local, private or reserved"):
        egress_target(f"http://{address}/hook", [address.strip("[]")])


def test_it_allows_a_private_address_only_in_a_network_the_operator_lists(settings):
    settings.KEEL_EGRESS_ALLOW_PRIVATE = ["10.0.0.0/8"]
    assert egress_target("http://10.1.2.3:8080/v1", ["10.1.2.3"]).url == "http://10.1.2.3:8080/v1"
    with pytest.raises(EgressError):
        egress_target("http://127.0.0.1:8080/v1", ["127.0.0.1"])


def test_a_name_that_resolves_to_loopback_is_refused_unless_loopback_is_allowed(settings):
    settings.KEEL_EGRESS_ALLOW_PRIVATE = []
    with pytest.raises(EgressError, match="localhost resolves to 127.0.0.1 is a loopback"):
        egress_target("http://localhost:9/v1", ["localhost"])
    settings.KEEL_EGRESS_ALLOW_PRIVATE = ["127.0.0.1/32", "::1/128"]
    assert egress_target("http://localhost:9/v1", ["localhost"]).host == "localhost"


def test_it_connects_to_the_address_it_checked_and_keeps_the_host_for_the_header_and_tls(settings):
    settings.KEEL_EGRESS_ALLOW_PRIVATE = ["127.0.0.1/32", "::1/128"]
    plain = egress_target("http://localhost:8123/v1/chat?x=1", ["localhost"])
    assert plain.url in ("http://127.0.0.1:8123/v1/chat?x=1", "http://[::1]:8123/v1/chat?x=1")
    assert plain.headers == {"Host": "localhost:8123"} and plain.extensions == {}
    secure = egress_target("https://localhost/v1", ["localhost"])
    assert secure.headers == {"Host": "localhost"} and secure.extensions == {"sni_hostname": "localhost"}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://api.acme.test/", "http:// or https://"),
        ("http://user:pw@api.acme.test/", "user name or password"),
        ("http://api.acme.test@127.0.0.1/", "user name or password"),
        ("http://127.0.0.1/", "not among the workspace's allowed hosts"),
        ("http://2130706433/", "not among the workspace's allowed hosts"),
        ("http://api.acme.test.evil.test/", "not among the workspace's allowed hosts"),
        ("http://evilacme.test/", "not among the workspace's allowed hosts"),
        ("not a url", "http:// or https://"),
    ],
)
def test_a_url_outside_the_workspaces_allowed_hosts_is_refused_with_its_reason(url, reason):
    assert reason in url_problem(url, ["api.acme.test", "*.acme.test"])


def test_a_wildcard_allows_subdomains_only():
    assert host_allowed("eu.models.acme.test", ["*.acme.test"])
    assert not host_allowed("acme.test", ["*.acme.test"])
    assert not host_allowed("evilacme.test", ["*.acme.test"])
    assert host_allowed("API.ACME.TEST.", ["api.acme.test"])


def test_allowed_hosts_are_host_names_patterns_or_addresses():
    assert allowed_hosts_problems(["api.openai.com", "*.example.com", "127.0.0.1", "::1"]) == []
    problems = allowed_hosts_problems(["https://api.openai.com", "api.openai.com:443", "*", "a b"])
    assert len(problems) == 4
    assert allowed_hosts_problems("api.openai.com") != []


def test_a_request_reaches_the_checked_address_with_the_host_name_in_its_host_header(settings):
    from pipelines.http import post_to, shared_client
    from tests.pipelines.chat_server import ChatServer, completion

    settings.KEEL_EGRESS_ALLOW_PRIVATE = ["127.0.0.1/32", "::1/128"]
    with ChatServer() as server:
        server.script = [completion()]
        port = server.base_url.split(":")[2].split("/")[0]
        target = egress_target(f"http://localhost:{port}/v1/chat/completions", ["localhost"])
        reply = post_to(shared_client(), target, content=b"{}", headers={"Content-Type": "application/json"},
                        timeout=5)  # fmt: skip
    assert reply.status_code == 200 and target.url.startswith("http://127.0.0.1:")
    assert server.requests[0]["headers"]["host"] == f"localhost:{port}"
