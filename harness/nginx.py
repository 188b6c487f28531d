"""nginx in front of a test TorchServe, started and stopped by deploy/nginx/proxy.py, the same
script `make demo` runs: on a free port, with the body limit and upstream read from that
server's own config.properties. The tests and `make hostile` share it."""
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PROXY = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "proxy.py"


@dataclass
class Proxy:
    url: str
    run_dir: Path

    def setting(self, pattern: str) -> str:
        """The first group of `pattern` in the nginx.conf this proxy runs with."""
        return re.search(pattern, (self.run_dir / "nginx.conf").read_text()).group(1)


def start_proxy(ts_config: Path, port: int, *options: str, server_env: dict | None = None) -> Proxy:
    """nginx on 127.0.0.1:port in front of the TorchServe that `ts_config` configures (with the
    TS_* variables of `server_env`, the environment it was started with, as TorchServe applies them)."""
    run_dir = Path(tempfile.mkdtemp(prefix="mnist-nginx-"))
    started = subprocess.run([sys.executable, str(PROXY), "start", "--ts-config", str(ts_config),
                              "--listen", f"127.0.0.1:{port}", "--run-dir", str(run_dir), *options],
                             env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if started.returncode != 0:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise RuntimeError(started.stderr)
    return Proxy(f"http://127.0.0.1:{port}", run_dir)


def stop_proxy(proxy: Proxy) -> None:
    subprocess.run([sys.executable, str(PROXY), "stop", "--run-dir", str(proxy.run_dir)],
                   check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(proxy.run_dir, ignore_errors=True)
