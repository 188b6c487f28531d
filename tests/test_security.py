"""The security settings, each proven against a real TorchServe. Proven elsewhere: no or wrong
token, registration refused, bodies over max_request_size (tests/test_server.py); the
container opens only inference and metrics (tests/test_container.py)."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import psutil
import pytest
import requests

from configuration import loaded_models, server_properties
from harness.hostile import zlib_bomb
from harness.load import RESPONSE_TIMEOUT
from harness.server import serving

HOST, GUEST = "169.254.213.1", "169.254.213.2"   # a link-local /30 between this host and the namespace
PROBE = """import socket, sys
for port in sys.argv[2:]:
    try:
        socket.create_connection((sys.argv[1], int(port)), timeout=3).close()
        print("open")
    except OSError as error:
        print(error.__class__.__name__)
"""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def other_machine():
    """A network namespace joined to this host by a veth pair: a second machine on a private link."""
    name, host_side, guest_side = f"mnist-sec-{os.getpid()}", f"msh{os.getpid()}"[:15], f"msg{os.getpid()}"[:15]
    made = ip("netns", "add", name, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    try:
        ip("link", "add", host_side, "type", "veth", "peer", "name", guest_side, "netns", name)
        ip("addr", "add", f"{HOST}/30", "dev", host_side)
        ip("link", "set", host_side, "up")
        ip("-n", name, "addr", "add", f"{GUEST}/30", "dev", guest_side)
        ip("-n", name, "link", "set", guest_side, "up")
        yield name
    finally:
        ip("link", "del", host_side, check=False)
        ip("netns", "del", name, check=False)


def connect_from(namespace: str, ports: list[int]) -> list[str]:
    """What a TCP connect from inside `namespace` to this host's side of the link gives, per port."""
    probe = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", PROBE, HOST, *map(str, ports)],
                           capture_output=True, text=True, check=True, timeout=60)
    return probe.stdout.split()


def server_ports(server) -> dict[str, int]:
    properties = server_properties(server.workdir / "config" / "config.properties")
    ports = {name: urlparse(getattr(server, name)).port for name in ("inference", "management", "metrics")}
    return {**ports, **{name: int(properties[f"{name}_port"]) for name in ("grpc_inference", "grpc_management")}}


def test_nothing_answers_from_another_machine(server, other_machine):
    """Inference, management, metrics and both gRPC APIs refuse a connection from another
    network host, while a socket bound to all interfaces (the control) accepts it."""
    ports = server_ports(server)
    with socket.create_server(("0.0.0.0", 0)) as control:
        answers = connect_from(other_machine, [control.getsockname()[1], *ports.values()])
    assert answers == ["open"] + ["ConnectionRefusedError"] * len(ports), dict(zip(["control", *ports], answers))
    frontend = server.processes()[0]
    listening = {c.laddr for c in frontend.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    assert {address.port for address in listening} == set(ports.values())
    assert {address.ip.removeprefix("::ffff:") for address in listening} == {"127.0.0.1"}   # Java: IPv4-mapped


def peak_rss_growth_mb(server, body: bytes) -> tuple[object, float, float]:
    """POST `body`; the answer, its seconds, and how far it raised the workers' peak RSS (MB)."""
    workers = [p.pid for p in server.processes()[1]]
    for pid in workers:
        Path(f"/proc/{pid}/clear_refs").write_text("5")   # peak RSS := current RSS
    before = {pid: psutil.Process(pid).memory_info().rss for pid in workers}
    started = time.perf_counter()
    response = server.predict(body)
    seconds = time.perf_counter() - started
    peak = {pid: int(next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                          if line.startswith("VmHWM:")).split()[1]) * 1024 for pid in workers}
    return response, seconds, sum(peak[pid] - before[pid] for pid in workers) / 2**20


def test_decompression_bomb_is_refused_before_decoding(server):
    """A 389 KB PNG of 400 Mpx (a 400 MB decode) gets 413 at once and costs no memory, while an
    image at the pixel cap, decoded, visibly raises a worker's peak: the measurement sees decoding."""
    bomb = zlib_bomb(20_000, 20_000)
    response, seconds, growth = peak_rss_growth_mb(server, bomb)
    print(f"bomb: {len(bomb)} bytes, {response.status_code} in {seconds:.3f} s, peak RSS +{growth:.1f} MB")
    assert response.status_code == 413 and response.json()["type"] == "image_too_large"
    assert seconds < 2 < RESPONSE_TIMEOUT
    assert growth < 10
    at_cap, _, cap_growth = peak_rss_growth_mb(server, zlib_bomb(5_000, 5_000))
    print(f"5000x5000 at the cap: {at_cap.status_code}, peak RSS +{cap_growth:.1f} MB")
    assert at_cap.status_code == 422 and cap_growth > 20


def test_allowed_urls_refuse_remote_and_system_files_even_with_the_model_api_on():
    """Were enable_model_api ever turned on, allowed_urls still refuses archives from the
    network (CVE-2023-43654) and arbitrary files."""
    with serving(extra_env={"TS_ENABLE_MODEL_API": "true"}) as server:
        headers = {"Authorization": f"Bearer {server.key('management')}"}
        for url in ("http://127.0.0.1:9/evil.mar", "https://example.invalid/evil.mar", "file:///etc/passwd"):
            response = requests.post(f"{server.management}/models", params={"url": url}, headers=headers, timeout=30)
            assert response.status_code == 404 and "does not match any allowed URL" in response.json()["message"]
        models = requests.get(f"{server.management}/models", headers=headers, timeout=10).json()["models"]
        assert sorted(m["modelName"] for m in models) == sorted(loaded_models(server_properties()))
