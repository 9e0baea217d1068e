"""The endpoint's bad cases: a port in use, an address off loopback, a bad
``listen``, a scrape racing the host's shutdown."""

from __future__ import annotations

import http.client
import socket
import threading
import time

import prometheus_client

from bhprom_support import WAIT_S, HostProcess, http_get, run_cli, wait_until
from bridgehost.cli import main
from bridgehost_prometheus import server as metrics_server


def test_a_port_in_use_is_a_start_error_naming_it(host, tmp_path):
    addr, port = host.metrics_address
    second = HostProcess(tmp_path, listen=f"{addr}:{port}")
    run = run_cli("run", str(second.config))
    assert run.returncode == 1, run.stderr
    assert f"cannot listen on {addr}:{port}" in run.stderr
    assert "in use" in run.stderr and f"port {port}" in run.stderr
    assert host.scrape()  # the first host still serves


def test_an_address_off_loopback_is_warned_about(tmp_path, capsys):
    config = HostProcess(tmp_path, listen="0.0.0.0:9464").config
    assert main(["check", str(config)]) == 0
    warning = "warning: transports[1] (prometheus): listen = '0.0.0.0:9464' is not a loopback address"
    assert warning in capsys.readouterr().out


def test_a_bad_listen_names_the_key(tmp_path, capsys):
    config = HostProcess(tmp_path, listen="9464").config
    assert main(["check", str(config)]) == 2
    assert "transports[1].listen: '9464' is not HOST:PORT" in capsys.readouterr().err


def test_a_scrape_while_the_host_stops_is_whole_or_refused(start_host):
    """Scrapers hammer /metrics while the host gets SIGTERM: each answer is a
    full page (its Content-Length met), an error status, or a refused or
    closed connection; never half a page."""
    observed = start_host()
    address = observed.metrics_address
    pages, refused, half = [], [], []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            try:
                status, headers, body = http_get(*address)
            except http.client.IncompleteRead as e:
                half.append(e)
            except (ConnectionError, http.client.RemoteDisconnected, TimeoutError) as e:
                refused.append(e)
                if isinstance(e, ConnectionRefusedError):
                    return
            else:
                assert int(headers["content-length"]) == len(body)
                pages.append((status, body))

    threads = [threading.Thread(target=scrape) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(pages) >= 8, "a few whole pages")
    observed.terminate()
    assert observed.proc.wait(timeout=WAIT_S) == 0
    time.sleep(0.2)
    done.set()
    for thread in threads:
        thread.join(WAIT_S)
    assert not half
    assert refused, "no scrape was refused after the host stopped"
    for status, body in pages:
        assert status in (200, 500)
        if status == 200:
            assert body.endswith(b"\n") and b"bridgehost_build_info" in body


def _closed_by_server(sock: socket.socket) -> bool:
    """Wait up to WAIT_S for the server to close ``sock``; whether it did."""
    sock.settimeout(WAIT_S)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_clients_holding_connections_cannot_take_the_hosts_threads(start_host):
    """prometheus_client's own server answers every connection in a thread,
    with no limit and no timeout: clients that connect and say nothing hold
    a thread and a descriptor each, for ever. Past max_connections a
    connection is closed at once and logged, and Prometheus' next scrape
    is answered once the idle ones are gone."""
    observed = start_host(prometheus="max_connections = 2")
    addr, port = observed.metrics_address
    idle = [socket.create_connection((addr, port)) for _ in range(2)]
    try:
        wait_until(lambda: _slots_taken(addr, port), "both idle connections are being answered")
        extra = socket.create_connection((addr, port))
        assert _closed_by_server(extra), "a connection past max_connections is closed at once"
        extra.close()
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: _scrape_ok(observed), "a scrape is answered once the idle connections are gone")
    assert "connection from 127.0.0.1 closed: 2 connections were being answered" in observed.output()


def _slots_taken(addr: str, port: int) -> bool:
    """Whether a new connection is closed by the server at once (the slots are taken)."""
    probe = socket.create_connection((addr, port))
    try:
        probe.settimeout(0.2)
        try:
            return probe.recv(1) == b""
        except TimeoutError:
            return False
    finally:
        probe.close()


def _scrape_ok(observed) -> bool:
    try:
        return "bridgehost_uptime_seconds" in observed.scrape()
    except (ConnectionError, http.client.RemoteDisconnected, AssertionError):
        return False


def test_a_client_that_stalls_is_cut_off_after_the_io_timeout(monkeypatch):
    """A connection whose client sends half a request and stops holds its
    thread only IO_TIMEOUT_S; then the server closes it."""
    monkeypatch.setattr(metrics_server._Handler, "timeout", 0.3)
    registry = prometheus_client.CollectorRegistry()
    prometheus_client.Gauge("rig_ready", "1 when ready", registry=registry).set(1)
    server = metrics_server.MetricsServer.serve("127.0.0.1", 0, registry, max_connections=1)
    try:
        port = server.server_address[1]
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.sendall(b"GET /metrics HTTP/1.1\r\n")  # and nothing more
        assert _closed_by_server(stalled)
        stalled.close()
        pages: list[bytes] = []

        def scraped() -> bool:  # the slot is free once the stalled connection's thread has ended
            try:
                status, _, body = http_get("127.0.0.1", port)
            except (ConnectionError, http.client.RemoteDisconnected):
                return False
            pages.append(body)
            return status == 200

        wait_until(scraped, "the stalled connection's slot serves a scrape")
        assert b"rig_ready 1.0" in pages[-1]
    finally:
        server.shutdown()
        server.server_close()
