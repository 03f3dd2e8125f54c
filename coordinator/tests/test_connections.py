"""Connection limits, through raw sockets against the real server: idle and half-open
connections, slow and huge request heads, the connection cap."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator

import pytest

from .servers import CoordinatorServer, FakeUpstream, coordinator_settings, fetch, running

MAX_CONNECTIONS = 16
HEAD_TIMEOUT = 0.6


@pytest.fixture(scope="module")
def guarded(local_fake: FakeUpstream) -> Iterator[CoordinatorServer]:
    settings = coordinator_settings(
        [{"name": "ollama", "kind": "local", "base_url": local_fake.base_url}],
        limits={
            "max_connections": MAX_CONNECTIONS,
            "header_timeout_s": HEAD_TIMEOUT,
            "max_header_bytes": 8192,
            "idle_timeout_s": 1,
        },
    )
    with running(settings) as server:
        yield server


def connect(server: CoordinatorServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.settings.listen.port), timeout=5)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or 5 s pass)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def refused(server: CoordinatorServer, reason: str) -> float:
    metric = f'hydra_connections_refused_total{{reason="{reason}"}}'
    for line in fetch(f"{server.url}/metrics").decode().splitlines():
        if line.startswith(metric):
            return float(line.split()[-1])
    raise AssertionError(f"{metric} missing")


def test_silent_connections_are_closed_after_the_head_timeout(guarded: CoordinatorServer) -> None:
    before = refused(guarded, "header_timeout")
    sockets = [connect(guarded) for _ in range(MAX_CONNECTIONS)]
    try:
        started = time.monotonic()
        answers = [read_all(s) for s in sockets]  # no byte sent: the server must hang up
        assert time.monotonic() - started < 4
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
            assert b'"code":"header_timeout"' in answer
    finally:
        for s in sockets:
            s.close()
    assert fetch(f"{guarded.url}/health")
    assert refused(guarded, "header_timeout") >= before + MAX_CONNECTIONS


def test_a_dripped_head_is_cut_at_the_head_timeout(guarded: CoordinatorServer) -> None:
    """Slowloris: one header line every 50 ms never completes the head; the head timeout is a
    deadline for the whole head, not for each byte."""
    with connect(guarded) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        started = time.monotonic()
        answer = b""
        while time.monotonic() - started < 3 and not answer:
            try:
                sock.sendall(b"x-drip: 1\r\n")
            except OSError:
                break
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                answer = sock.recv(65536)
    assert time.monotonic() - started < 3, "still connected after 3 s of dripping"
    if answer:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]


def test_idle_connections_at_the_cap_make_room_for_a_client(guarded: CoordinatorServer) -> None:
    """The lockout: as many idle sockets as the cap allows. A client still gets its answer;
    the longest idle socket is closed (408) to make room."""
    holders = [connect(guarded) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.1)
        with connect(guarded) as client:
            client.sendall(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
            answer = read_all(client)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
        holders[0].settimeout(2)
        assert read_all(holders[0]).startswith(b"HTTP/1.1 408 ")
    finally:
        for s in holders:
            s.close()


def test_past_the_cap_with_every_connection_busy_a_new_one_gets_503(
    guarded: CoordinatorServer, local_fake: FakeUpstream
) -> None:
    local_fake.control(hold=True)  # no answer until every connection is busy and tested
    body = b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}]}'
    busy = [connect(guarded) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in busy:  # each one waits for its (slow) answer: none is idle
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                b"content-type: application/json\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
        deadline = time.monotonic() + 60  # bounds a failure only
        backend = guarded.runtime.pool["ollama"]
        while backend.in_flight + backend.waiting < MAX_CONNECTIONS:  # each one is being served
            assert time.monotonic() < deadline, (backend.in_flight, backend.waiting)
            time.sleep(0.05)
        with connect(guarded) as extra:
            answer = read_all(extra)
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:80]
        assert b"too_many_connections" in answer
        local_fake.control(hold=False)
        for sock in busy:  # and the busy ones are answered
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in busy:
            sock.close()
    assert b'"status"' in fetch(f"{guarded.url}/health")


def test_a_huge_header_is_refused_before_it_is_read(guarded: CoordinatorServer) -> None:
    with connect(guarded) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: ")
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except OSError:
            pass  # the server closed the connection: what we want
        answer = b""
        with contextlib.suppress(OSError):
            answer = read_all(sock)
    assert sent < 64 * 1024 * 1024, "the server read a 64 MB header"
    if answer:  # the 431 may be lost when the server resets the connection we still write to
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    assert refused(guarded, "header_too_large") >= 1
    assert b'"status"' in fetch(f"{guarded.url}/health")


def test_a_head_just_under_the_cap_is_served(guarded: CoordinatorServer) -> None:
    with connect(guarded) as sock:
        sock.sendall(
            b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-pad: "
            + b"a" * 6000
            + b"\r\nconnection: close\r\n\r\n"
        )
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]


def test_a_large_body_sent_with_its_head_is_not_mistaken_for_a_head(
    guarded: CoordinatorServer,
) -> None:
    body = b'{"query": "' + b"a" * 200_000 + b'"}'
    with connect(guarded) as sock:
        sock.sendall(
            b"POST /route HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
