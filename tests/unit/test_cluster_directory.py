"""The node list a cluster gives its clients (signaling/cluster/directory.py): only plain
http(s) base URLs of live nodes, never this node's own, never anything with credentials."""

from __future__ import annotations

import pytest

from signaling.cluster.directory import (
    MAX_NODES,
    client_address,
    cluster_message,
    other_live_nodes,
)
from signaling.cluster.pages import cluster_page


@pytest.mark.parametrize(("address", "expected"), [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("https://Node2.Example.org", "https://node2.example.org"),
    ("https://node2.example.org/", "https://node2.example.org"),
    ("http://[::1]:8443", "http://[::1]:8443"),
])
def test_plain_base_urls_are_kept(address: str, expected: str) -> None:
    assert client_address(address) == expected


@pytest.mark.parametrize("address", [
    "", "javascript:alert(1)", "data:text/html,<script>", "ftp://host", "ws://host:1",
    "//evil.example", "evil.example", "http://user:pw@host", "http://user@host",
    "http://host/path", "http://host/?q=1", "http://host/#frag", "http://host:99999",
    "http://host:port", "http://", "http://ho st", "http://host\\@evil", "http://a<b",
    "http://" + "a" * 300,
])
def test_anything_else_is_refused(address: str) -> None:
    assert client_address(address) is None


def test_other_live_nodes_leaves_out_self_the_dead_and_the_bad() -> None:
    cards = [("http://127.0.0.1:2", True), ("http://127.0.0.1:1", True),
             ("http://127.0.0.1:3", False), ("http://u:p@127.0.0.1:4", True),
             ("http://127.0.0.1:1/", True), ("https://self.example", True)]
    assert other_live_nodes("https://self.example/", cards) == (
        "http://127.0.0.1:1", "http://127.0.0.1:2")


def test_the_list_is_bounded() -> None:
    cards = [(f"http://10.0.0.{i}", True) for i in range(1, 100)]
    assert len(other_live_nodes("http://10.0.0.1", cards)) == MAX_NODES
    assert cluster_message(("http://a",)) == {"type": "cluster", "nodes": ["http://a"]}


def test_a_cluster_page_names_the_nodes_its_csp_allows_from_one_snapshot() -> None:
    html = '<!doctype html>\n<head>\n  <meta charset="utf-8">\n  <title>x</title>'
    addresses = ["http://127.0.0.1:9002/", "https://Node.Example", "http://127.0.0.1:9001",
                 'http://a"><script>x</script>', "http://user:pw@127.0.0.1:9", "javascript:x"]
    body, csp = cluster_page(html, addresses)
    meta = ('<meta name="diemcau-nodes" content="http://127.0.0.1:9001 '
            'http://127.0.0.1:9002 https://node.example">')
    assert meta in body and body.index(meta) > body.index('charset="utf-8"')
    assert "<script>" not in body and "user" not in body and "javascript" not in body
    assert ("connect-src 'self' ws://127.0.0.1:9001 ws://127.0.0.1:9002 "
            "wss://node.example;") in csp
    with pytest.raises(ValueError):
        cluster_page("<html></html>", addresses)
