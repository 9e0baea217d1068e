"""The endpoint's bad cases: a port in use, an address off loopback, a bad
``listen``, a scrape racing the host's shutdown."""

from __future__ import annotations

import http.client
import threading
import time

from bhprom_support import WAIT_S, HostProcess, http_get, run_cli, wait_until
from bridgehost.cli import main


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
