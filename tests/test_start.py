"""Starting the server as its users do, from any folder, beside other servers.

- By hand: `torchserve --start` run from an unrelated folder with the repository's
  config/config.properties as it is (ports moved with TorchServe's own TS_* variables) serves,
  exports our metrics and writes its logs there; the mistakes that remain possible (no model
  store, a log config that is not there) fail at once, naming the path.
- `make serve`'s way: scripts/start.sh in a copy of the repository's layout. Beside it, a second
  server started as the tests start theirs: each has its own worker-socket folder, and kill -9
  of one of the second server's workers leaves the first's sockets, worker PIDs and answers as
  they were. (With both in /tmp, the second server's workers replace the first's socket files
  with their own.) It starts one worker per CPU it may use: container/usable_cpus.py, checked
  here under `taskset` and against cgroup quota files.
The container's layout is started by tests/test_container.py.
"""
import os
import shutil
import subprocess
import time

import pytest
import requests

from harness.load import describe
from harness.server import (ARCHIVE, PORTS, REPO, SERVING_CONFIG, START_SCRIPTS, Server, free_ports, own_temp_env,
                            port_variables, serving, stop_server, wait_ready)
from training.user_styles import mnist_png

CONFIG = REPO / "config" / "config.properties"
USABLE_CPUS = REPO / "container" / "usable_cpus.py"
BY_HAND = ["torchserve", "--start", "--ncs", "--ts-config", str(CONFIG), "--model-store", "store",
           "--models", "mnist=mnist.mar", "mnist_heavy=mnist.mar"]   # the two lanes config.properties loads
REPOSITORY_LAYOUT = [*START_SCRIPTS, *SERVING_CONFIG, "model_store/mnist.mar"]


@pytest.fixture(scope="module")
def by_hand(tmp_path_factory) -> Server:
    """TorchServe started by hand in a folder that holds only the archive, in store/."""
    folder = tmp_path_factory.mktemp("elsewhere")
    (folder / "store").mkdir()
    shutil.copy(ARCHIVE, folder / "store" / "mnist.mar")
    ports = dict(zip(PORTS, free_ports(len(PORTS))))
    env = own_temp_env(folder / "tmp", port_variables(ports))
    subprocess.run(BY_HAND, cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL)
    server = Server.on_ports(folder, ports, env)
    wait_ready(server, config=CONFIG)
    yield server
    stop_server(server)


def test_started_by_hand_from_an_unrelated_folder_it_serves_and_logs(by_hand, test_set):
    images, labels = test_set
    answers = [by_hand.predict(mnist_png(image)).json()["digit"] for image in images[:20]]
    assert answers == labels[:20].tolist()
    assert sorted(path.name for path in by_hand.workdir.iterdir()) == ["key_file.json", "logs", "store", "tmp"]
    assert "Model mnist loaded." in by_hand.log("ts_log.log")
    assert by_hand.log("access_log.log").count("/predictions/mnist") >= 20
    metrics = requests.get(f"{by_hand.metrics}/metrics", timeout=10).text
    for declared_by_the_handler in ("# TYPE DigitPredictions counter", "# TYPE DigitPreprocessMs counter",
                                    "# TYPE DigitLatencyDeciseconds histogram"):
        assert declared_by_the_handler in metrics


@pytest.mark.parametrize("mistake,arguments,message", [
    ("no model store here", ["--ts-config", str(CONFIG)], "--model-store directory not found: model_store"),
    ("the log config named from the wrong folder", ["--ts-config", str(CONFIG), "--model-store", "store",
                                                    "--log-config", "config/log4j2.xml"],
     "--log-config file not found: {folder}/config/log4j2.xml"),
])
def test_a_start_that_cannot_work_fails_at_once_naming_the_path(tmp_path, mistake, arguments, message):
    (tmp_path / "store").mkdir()
    env = own_temp_env(tmp_path / "tmp")
    started = subprocess.run(["torchserve", "--start", "--ncs", *arguments], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 1, mistake
    assert message.format(folder=tmp_path) in started.stdout
    assert not (tmp_path / "tmp" / ".model_server.pid").exists()   # no server was left behind


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Server:
    """scripts/start.sh, as `make serve` runs it, in a copy of the repository's layout (its own
    TMPDIR, as if on its own machine; its ports moved with TorchServe's TS_* variables)."""
    root = tmp_path_factory.mktemp("repository")
    for path in REPOSITORY_LAYOUT:
        (root / path).parent.mkdir(exist_ok=True)
        shutil.copy2(REPO / path, root / path)
    ports = dict(zip(PORTS, free_ports(len(PORTS))))
    env = own_temp_env(root / "tmp", {**port_variables(ports), "PYTHONPATH": str(REPO)})   # the Makefile exports it
    del env["TEMP"]   # start.sh chooses the folder itself
    started = subprocess.run([root / "scripts" / "start.sh"], cwd=root, env=env, capture_output=True, text=True,
                             timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"worker sockets in {root}/tmp/mnist-torchserve-{os.getuid()}" in started.stdout, started.stdout
    server = Server.on_ports(root, ports, env)
    yield server
    stopped = subprocess.run([root / "scripts" / "stop.sh"], cwd=root, env=env, capture_output=True, text=True)
    assert "TorchServe has stopped" in stopped.stdout


def test_each_server_has_its_own_worker_sockets_and_a_second_one_leaves_the_first_alone(made, test_set):
    images, labels = test_set
    digits = [mnist_png(image) for image in images[100:120]]
    answers = [made.predict(png).json() for png in digits]
    assert [a["digit"] for a in answers] == labels[100:120].tolist()
    first_workers = sorted(p.pid for p in made.processes()[1])
    first_sockets = made.worker_sockets()
    assert {path.parent for path in first_sockets} == {made.workdir / "tmp" / f"mnist-torchserve-{os.getuid()}"}
    first_inodes = [path.stat().st_ino for path in first_sockets]

    with serving() as second:
        assert {path.parent for path in second.worker_sockets()} == {second.workdir / "tmp"}
        workers = second.processes()[1]
        victim = workers[0]
        victim.kill()
        deadline = time.monotonic() + 60
        while victim.pid in (pids := [p.pid for p in second.processes()[1]]) or len(pids) < len(workers):
            assert time.monotonic() < deadline, "the second server did not replace its killed worker"
            time.sleep(0.2)
        wait_ready(second)
        assert second.predict(digits[0]).json() == answers[0]

    assert sorted(p.pid for p in made.processes()[1]) == first_workers
    # a worker deletes the file at its socket path and binds a new one there: the same names in
    # one folder would leave the first server's paths pointing at the second's workers
    assert [path.stat().st_ino for path in first_sockets] == first_inodes, "the second server took the sockets"
    assert [made.predict(png).json() for png in digits] == answers


def test_make_serve_workers_import_the_archive_not_the_checkout(made):
    """The Makefile puts the repository on PYTHONPATH; TorchServe would pass it on to its workers
    ahead of the extracted archive, so they would run the checkout's handler and model code."""
    for worker in made.processes()[1]:
        path = worker.environ().get("PYTHONPATH", "").split(":")
        assert str(REPO) not in path
        assert path[0].startswith(str(made.workdir / "tmp")), path   # the extracted archive comes first


def usable_cpus(*args: str, cpu_set: str | None = None) -> int:
    taskset = ["taskset", "-c", cpu_set] if cpu_set else []
    return int(subprocess.run([*taskset, "python3", USABLE_CPUS, *args], capture_output=True, text=True,
                              check=True).stdout)


def test_make_serve_starts_one_worker_per_usable_cpu(made):
    assert len(describe(made)) == usable_cpus()   # mnist's; its heavy lane has one of its own


@pytest.mark.parametrize("cpu_max, cpu_set, expected", [
    (None, "0", 1),                       # taskset -c 0
    ("max 100000", "0,1", 2),             # a cgroup without a quota
    ("150000 100000", "0,1", 2),          # --cpus 1.5: rounded up
    ("50000 100000", "0,1", 1),           # --cpus 0.5: at least one
    ("100000 100000", "0,1", 1),          # --cpus 1 on two cores
    ("400000 100000", "0", 1),            # a quota above the CPU set: the set decides
])
def test_usable_cpus_are_the_cpu_set_capped_by_the_cgroup_quota(tmp_path, cpu_max, cpu_set, expected):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    cgroup_file = tmp_path / "cpu.max"
    if cpu_max is not None:
        cgroup_file.write_text(cpu_max + "\n")
    assert usable_cpus(str(cgroup_file), cpu_set=cpu_set) == expected
