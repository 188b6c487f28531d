"""nginx in front of TorchServe, serving the draw-a-digit page and bounding what each API request
may cost: render its config, start, stop.

The upstream address and the body limit are read from the TorchServe config.properties that
nginx fronts (inference_address, max_request_size), with the TS_* variables of this environment
on top as TorchServe applies them, never written down twice; `make demo`
and the tests run nginx through this one script.

    python deploy/nginx/proxy.py start  [--ts-config FILE] [--listen HOST:PORT] [--run-dir DIR] [--rate R] [--burst N]
    python deploy/nginx/proxy.py stop   [--run-dir DIR]
    python deploy/nginx/proxy.py render [--ts-config FILE] [--listen HOST:PORT] [--run-dir DIR] [--rate R] [--burst N]

`render` prints the configuration, for an nginx of your own; `start` writes it to
RUN_DIR/nginx.conf and starts nginx with its pid file, logs and temporary files in RUN_DIR,
stopping one started from the same RUN_DIR first.
"""
import argparse
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
STOP_TIMEOUT_S = 10
sys.path.insert(0, str(REPO))   # run as a script: the repository's one config reader
from configuration import heavy_lanes, server_properties  # noqa: E402
from model.errors import ForHeavyLane  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"   # sbin is not on every user's PATH
# The limits nginx puts on every API request (docs/reliability.md, "Bounded cost"):
MAX_FORM_FIELDS = 4        # the API needs two: the image and an explanation's target
CONNECTIONS_PER_ADDRESS = 8   # requests in progress at once per client address (a browser opens 6)
CLIENT_TIMEOUT = "10s"     # silence allowed while a client sends its headers or body, or idles
FAST_LANE_MAX_BODY = 2**20   # bytes; a larger body goes to the model's heavy lane at once


def js_module() -> Path:
    """njs (Debian's libnginx-mod-http-js) in this nginx's modules folder: guard.js runs on it."""
    built = subprocess.run([NGINX, "-V"], capture_output=True, text=True).stderr
    folder = re.search(r"--modules-path=(\S+)", built)
    module = Path(folder.group(1) if folder else "/usr/lib/nginx/modules") / "ngx_http_js_module.so"
    if not module.exists():
        raise SystemExit(f"[proxy] {module} is missing: install njs (Debian: libnginx-mod-http-js; `make setup` does)")
    return module


def upstream(settings: dict) -> str:
    """host:port of TorchServe's inference API, on loopback when it listens on every address."""
    address = urlsplit(settings.get("inference_address", ""))
    if address.scheme != "http" or not address.port:
        raise SystemExit(f"[proxy] inference_address must be http://HOST:PORT, not {address.geturl()!r}")
    host = "127.0.0.1" if address.hostname == "0.0.0.0" else address.hostname
    return f"{host}:{address.port}"


def worker_user(web_root: Path) -> str:
    """Run as root, nginx would switch its workers to `nobody`, who may not read the checkout:
    they run as the owner of the page's files instead. Otherwise nginx keeps the caller's user."""
    if os.geteuid() != 0:
        return ""
    owner = web_root.stat()
    return f"user {pwd.getpwuid(owner.st_uid).pw_name} {grp.getgrgid(owner.st_gid).gr_name};"


def render(ts_config: Path, listen: str, run_dir: Path, rate: str, burst: int) -> str:
    settings = server_properties(ts_config, os.environ)
    if "max_request_size" not in settings:
        raise SystemExit(f"[proxy] {ts_config} sets no max_request_size: nginx's body limit is copied from it")
    web_root = REPO / "web"
    values = {
        "user": worker_user(web_root),
        "run_dir": str(run_dir),
        "listen": listen,
        "web_root": str(web_root),
        "headers": str(HERE / "security-headers.conf"),
        "js_module": str(js_module()),
        "guard": str(HERE / "guard.js"),
        "max_form_fields": str(MAX_FORM_FIELDS),
        "connections": str(CONNECTIONS_PER_ADDRESS),
        "client_timeout": CLIENT_TIMEOUT,
        "upstream": upstream(settings),
        "heavy_lanes": "".join(f"\n        {model} {heavy};" for model, heavy in heavy_lanes(settings).items()),
        "fast_lane_max_body": str(FAST_LANE_MAX_BODY),
        "handoff_status": str(ForHeavyLane.status),
        "fast_lane_marker": ForHeavyLane.marker,
        "max_body_bytes": str(int(settings["max_request_size"])),
        "rate": rate,
        "burst": str(burst),
    }
    template = (HERE / "nginx.conf.template").read_text()
    missing = set(PLACEHOLDER.findall(template)) - values.keys()
    if missing:
        raise SystemExit(f"[proxy] the template needs values for {sorted(missing)}")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def running_pid(run_dir: Path) -> int | None:
    """The pid of the nginx master started from run_dir, if it still runs."""
    try:
        pid = int((run_dir / "nginx.pid").read_text())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ValueError):
        return None
    return pid if b"nginx" in command and str(run_dir).encode() in command else None


def alive(pid: int) -> bool:
    """Whether pid still runs: an exited master waits as a zombie until its new parent (init, as
    nginx detaches) reaps it, which some container inits do only every second or two."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def stop(run_dir: Path) -> bool:
    """Stop the nginx started from run_dir (fast shutdown); False when none was running."""
    pid = running_pid(run_dir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while alive(pid):
        if time.monotonic() > deadline:
            raise SystemExit(f"[proxy] nginx (pid {pid}) did not stop within {STOP_TIMEOUT_S} s")
        time.sleep(0.05)
    return True


def start(config: str, run_dir: Path) -> None:
    stop(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    conf = run_dir / "nginx.conf"
    conf.write_text(config)
    command = [NGINX, "-e", str(run_dir / "error.log"), "-c", str(conf)]
    checked = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True)
    if checked.returncode != 0:
        raise SystemExit(f"[proxy] nginx refused {conf}:\n{checked.stderr}")
    # nginx returns once it listens and has detached; a port in use fails here
    started = subprocess.run(command, capture_output=True, text=True)
    if started.returncode != 0:
        raise SystemExit(f"[proxy] nginx did not start:\n{started.stderr}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "render"])
    parser.add_argument("--ts-config", type=Path, default=REPO / "config" / "config.properties",
                        help="the TorchServe config.properties nginx fronts (default: config/config.properties)")
    parser.add_argument("--listen", default="127.0.0.1:8000", help="nginx's address (default: 127.0.0.1:8000)")
    parser.add_argument("--run-dir", type=Path, default=REPO / "logs" / "nginx",
                        help="pid file, logs, temporary files and the rendered nginx.conf (default: logs/nginx)")
    parser.add_argument("--rate", default="10r/s", help="requests per client address, sustained (default: 10r/s)")
    parser.add_argument("--burst", type=int, default=20,
                        help="requests per client address answered at once beyond the rate (default: 20)")
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()
    if args.action == "stop":
        print(f"[proxy] {'stopped nginx' if stop(run_dir) else 'no nginx was running'} from {run_dir}")
        return
    config = render(args.ts_config, args.listen, run_dir, args.rate, args.burst)
    if args.action == "render":
        sys.stdout.write(config)
        return
    start(config, run_dir)
    print(f"[proxy] nginx on http://{args.listen}/ in front of TorchServe at {upstream(server_properties(args.ts_config, os.environ))} "
          f"(logs in {run_dir})")


if __name__ == "__main__":
    main(sys.argv[1:])
