"""The serving image, built and run by a real Docker engine (`make image`, `make image-test`).

It works on a stock Debian host: the `docker` CLI chosen is one that builds with BuildKit (the
Dockerfile's `RUN --mount` needs it); a `dockerd` is started when none answers, without touching
the host's firewall or forwarding; and where no registry is reachable the image starts from a
Debian bookworm base made here with debootstrap. Wheels come from the host's pip (its cache or
its own index), so the image's 3 GB of wheels are not downloaded a second time.
"""
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from configuration import REPO

IMAGE = "mnist-torchserve"
LOCAL_BASE = "mnist-base:bookworm"
DEBIAN_RELEASE = "bookworm"
BASE_GLIBC_MINOR = 36                  # bookworm's glibc 2.36: the newest manylinux its wheels may need
WORKDIR = REPO / ".image"              # wheels, dockerd's log and pid file (gitignored)
WHEELS = WORKDIR / "wheels"
WHEELS_FOR = WORKDIR / "wheels-requirements.txt"   # the serving requirements WHEELS were downloaded for
DOCKERFILE = REPO / "Dockerfile"
IMAGE_TITLE = "org.opencontainers.image.title=mnist-torchserve"


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(arg) for arg in args], capture_output=True, text=True, **kwargs)


def instructions() -> list[tuple[str, str, str]]:
    """(stage, INSTRUCTION, arguments) for each Dockerfile instruction; the last stage is 'final'."""
    found, stage = [], ""
    for line in re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines():
        keyword, _, args = line.strip().partition(" ")
        if not keyword or keyword.startswith("#"):
            continue
        if keyword == "FROM":
            stage = args.split(" AS ")[1].strip() if " AS " in args else "final"
        found.append((stage, keyword, " ".join(args.split())))
    return found


def serving_requirements(dest: Path) -> Path:
    """The Dockerfile's own subset of requirements.txt (its `requirements` stage), made in `dest`."""
    shutil.copy(REPO / "requirements.txt", dest)
    for stage, keyword, args in instructions():
        if stage == "requirements" and keyword == "RUN":
            subprocess.run(["sh", "-c", args], cwd=dest, check=True)
    return dest / "serving-requirements.txt"


def docker_cli() -> str:
    """The first `docker` on PATH that builds with BuildKit: one with the buildx plugin, or a
    CLI older than 23 (Debian's docker.io 20.10), whose BuildKit is built in."""
    seen = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        cli = Path(folder) / "docker"
        if not os.access(cli, os.X_OK) or cli.resolve() in seen:
            continue
        seen.add(cli.resolve())
        if run(cli, "buildx", "version").returncode == 0:
            return str(cli)
        version = re.search(r"version (\d+)\.", run(cli, "--version").stdout)
        if version and int(version.group(1)) < 23:
            return str(cli)
    raise RuntimeError("no docker CLI here builds with BuildKit: install the buildx plugin, or Debian's docker.io")


def host_network_state() -> dict:
    """What a dockerd could change on the host: forwarding, firewall rules, its network links."""
    state = {name: Path(f"/proc/sys/net/{name}").read_text().strip()
             for name in ("ipv4/ip_forward", "ipv6/conf/all/forwarding") if Path(f"/proc/sys/net/{name}").exists()}
    for save in ("iptables-save", "ip6tables-save"):
        if shutil.which(save):
            rules = run(save).stdout
            state[save] = [line for line in rules.splitlines() if not line.startswith("#")]
    # Only the links Docker makes (other programs may add and remove their own meanwhile).
    state["links"] = sorted(link for link in re.findall(r"^\d+: ([^:@]+)", run("ip", "-o", "link").stdout, re.M)
                            if re.match(r"docker\d|br-|veth", link))
    return state


@contextlib.contextmanager
def engine() -> Iterator[str]:
    """The docker CLI, with a daemon answering it. A dockerd started here has no firewall rules,
    no forwarding and no bridge (containers run with --network none, builds with the host's
    network) and is stopped afterwards; the host's network state must be as it was."""
    cli = docker_cli()
    if run(cli, "info").returncode == 0:
        yield cli
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise RuntimeError("no Docker daemon answers and no dockerd is installed (Debian: apt-get install docker.io)")
    before = host_network_state()
    WORKDIR.mkdir(exist_ok=True)
    with open(WORKDIR / "dockerd.log", "w") as log:
        daemon = subprocess.Popen([dockerd, "--iptables=false", "--ip-forward=false", "--ip-masq=false",
                                   "--bridge=none", "--pidfile", WORKDIR / "dockerd.pid"],
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while run(cli, "info").returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start; see {WORKDIR / 'dockerd.log'}")
            time.sleep(0.5)
        yield cli
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        after = host_network_state()
        assert after == before, f"dockerd changed the host's network: {before} -> {after}"


def image_exists(cli: str, name: str) -> bool:
    return run(cli, "image", "inspect", name).returncode == 0


def debian_sources(release: str = DEBIAN_RELEASE) -> list[tuple[str, str]]:
    """(URI, suite) of the host's own apt sources for Debian `release` (its main archive, its
    updates and security suites), read from sources.list and deb822 .sources files."""
    found = []
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text()
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                if "deb" in fields.get("Types", "").split() and "main" in fields.get("Components", "").split():
                    found += [(uri, suite) for uri in fields.get("URIs", "").split()
                              for suite in fields.get("Suites", "").split()]
        else:
            found += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)\s+.*\bmain\b", text, re.M)
    return [(uri, suite) for uri, suite in found if suite == release or suite.startswith(f"{release}-")]


def build_local_base(cli: str, name: str = LOCAL_BASE) -> float | None:
    """Debian bookworm with Python 3 and pip, from the host's apt mirror by debootstrap, imported as
    `name`: the stand-in for python:3.11-slim-bookworm where no registry is reachable. Skipped
    (None) when the image exists; else the seconds it took. Like that image, its pip installs
    into the system Python: PEP 668's EXTERNALLY-MANAGED marker is removed."""
    if image_exists(cli, name):
        return None
    started = time.monotonic()
    sources = debian_sources()
    mirror = next((uri for uri, suite in sources if suite == DEBIAN_RELEASE), None)
    if mirror is None:
        raise RuntimeError(f"the host's apt sources name no Debian {DEBIAN_RELEASE} mirror for debootstrap")
    with tempfile.TemporaryDirectory(dir=WORKDIR if WORKDIR.exists() else None) as tmp:
        root = Path(tmp) / "root"
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-pip,ca-certificates",
                        DEBIAN_RELEASE, root, mirror], check=True, stdout=subprocess.DEVNULL)
        (root / "etc/apt/sources.list").write_text(
            "".join(f"deb {uri} {suite} main\n" for uri, suite in dict.fromkeys(sources)))
        for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        subprocess.run(["chroot", root, "apt-get", "clean"], check=True)
        shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([cli, "import", "--change", "ENV LANG=C.UTF-8", "-", name], stdin=tar.stdout,
                       check=True, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            run(cli, "rmi", name)   # a partial tree must not be kept as the base
            raise RuntimeError("tar of the debootstrap tree failed")
    return time.monotonic() - started


def registry_base(cli: str) -> str | None:
    """The Dockerfile's default base, when it is here or a registry gives it; else None."""
    default = next(args.split("=", 1)[1] for _, keyword, args in instructions()
                   if keyword == "ARG" and args.startswith("PYTHON_IMAGE="))
    if image_exists(cli, default):
        return default
    try:
        return default if run(cli, "pull", default, timeout=300).returncode == 0 else None
    except subprocess.TimeoutExpired:
        return None


def download_wheels() -> None:
    """The serving wheels in .image/wheels, by the host's pip: from its cache or index, without a
    second download where `make setup` already fetched them. Only wheels the image's Python (the
    tests' one) and glibc can run; files of other pins are removed. pip matches the platform
    tags given exactly, so every manylinux up to the base's glibc is named. Skipped when the
    requirements are those of the last download."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    machine = platform.machine()   # the image is built for the host's architecture
    with tempfile.TemporaryDirectory() as tmp:
        requirements = serving_requirements(Path(tmp))
        if WHEELS_FOR.exists() and WHEELS_FOR.read_text() == requirements.read_text() and any(WHEELS.glob("*.whl")):
            return   # pip would only read the 3 GB again to find them there
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
             "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}",
             *[f"--platform=manylinux_2_{minor}_{machine}" for minor in range(17, BASE_GLIBC_MINOR + 1)],
             f"--platform=manylinux2014_{machine}", "--dest", WHEELS, "-r", requirements],
            capture_output=True, text=True)
        if download.returncode != 0:
            raise RuntimeError(f"pip download failed:\n{download.stdout[-2000:]}{download.stderr[-2000:]}")
        # pip names each wheel it resolved: "Saved <path>" or "File was already downloaded <path>".
        wanted = {Path(path).name for path in re.findall(r"^\s*(?:Saved|File was already downloaded) (\S+)$",
                                                          download.stdout, re.M)}
        if not wanted:
            raise RuntimeError(f"pip download named no wheel:\n{download.stdout[-2000:]}")
        for stale in {path.name for path in WHEELS.glob("*.whl")} - wanted:
            (WHEELS / stale).unlink()
        WHEELS_FOR.write_text(requirements.read_text())


def build(cli: str, base: str | None = None, ca_bundle: str | None = None, tag: str = IMAGE) -> float:
    """`docker build` with BuildKit; the seconds it took. The CA bundle is a build secret (for pip
    and apt behind a TLS-intercepting proxy), never a layer. The build uses the host's network:
    a dockerd started by engine() gives containers none."""
    command = [cli, "build", "--network", "host", "-t", tag,
               "--build-arg", f"REVISION={run('git', 'rev-parse', 'HEAD', cwd=REPO).stdout.strip() or 'unknown'}"]
    if base:
        command += ["--build-arg", f"PYTHON_IMAGE={base}"]
    if ca_bundle:
        command += ["--secret", f"id=ca,src={ca_bundle}"]
    started = time.monotonic()
    subprocess.run([*command, REPO], check=True, env={**os.environ, "DOCKER_BUILDKIT": "1"})
    elapsed = time.monotonic() - started
    # The image this tag named before is now dangling: only ours are removed.
    run(cli, "image", "prune", "--force", "--filter", f"label={IMAGE_TITLE}")
    return elapsed


def build_image(ca_bundle: str | None = None, tag: str = IMAGE) -> None:
    """`make image`: wheels, a base (the registry's, else the local one), the build."""
    download_wheels()
    with engine() as cli:
        base = os.environ.get("PYTHON_IMAGE") or registry_base(cli)
        if base is None:
            print(f"[image] no registry gives the base: using {LOCAL_BASE} (debootstrap)", flush=True)
            seconds = build_local_base(cli)
            if seconds is not None:
                print(f"[image] {LOCAL_BASE} made in {seconds:.0f} s", flush=True)
            base = LOCAL_BASE
        seconds = build(cli, base, ca_bundle, tag)
        print(f"[image] {tag} built from {base} in {seconds:.0f} s", flush=True)
        print(layer_table(cli, tag), flush=True)


@dataclass
class Layer:
    size_bytes: int
    created_by: str


def layers(cli: str, tag: str = IMAGE) -> list[Layer]:
    """The image's layers, oldest first, with their sizes."""
    history = run(cli, "history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", tag,
                  check=True).stdout
    rows = [line.split("\t", 1) for line in history.splitlines()]
    return [Layer(int(size), " ".join(created.split())) for size, created in reversed(rows)]


def layer_table(cli: str, tag: str = IMAGE) -> str:
    found = layers(cli, tag)
    # "RUN |2 PYTHON_IMAGE=... REVISION=... /bin/sh -c apt-get ..." -> "RUN apt-get ..."
    steps = [re.sub(r"^RUN \|\d+ (\S+=\S* )*/bin/sh -c ", "RUN ", layer.created_by) or "(the base image)"
             for layer in found]
    lines = [f"{layer.size_bytes / 1e6:10.1f} MB  {step[:100]}" for layer, step in zip(found, steps) if layer.size_bytes]
    return "\n".join([*lines, f"{sum(layer.size_bytes for layer in found) / 1e6:10.1f} MB  in all"])


def layer_files_holding(cli: str, contents: dict[str, bytes], tag: str = IMAGE) -> dict[str, list[str]]:
    """For each named content, every file in any layer of the image (`docker save`) with its bytes."""
    wanted = {(len(content), hashlib.sha256(content).hexdigest()): name for name, content in contents.items()}
    found = {name: [] for name in contents}
    saved = subprocess.Popen([cli, "save", tag], stdout=subprocess.PIPE)
    layer_count = 0
    with tarfile.open(fileobj=saved.stdout, mode="r|") as archive:
        for member in archive:
            if not member.name.endswith("layer.tar"):
                continue
            layer_count += 1
            with tarfile.open(fileobj=archive.extractfile(member), mode="r|") as layer:
                for entry in layer:
                    if entry.isfile() and any(size == entry.size for size, _ in wanted):
                        key = (entry.size, hashlib.sha256(layer.extractfile(entry).read()).hexdigest())
                        if key in wanted:
                            found[wanted[key]].append(f"{member.name}:{entry.name}")
    if saved.wait() != 0 or layer_count == 0:
        raise RuntimeError(f"docker save {tag} gave no layers")
    return found


# A client run inside the container (it has no network): the key from key_file.json, the body
# from stdin, and the answer's status and JSON on stdout.
CLIENT = """
import json, sys, urllib.error, urllib.request
key = json.load(open("key_file.json"))["inference"]["key"]
request = urllib.request.Request("http://127.0.0.1:8080/" + sys.argv[1], data=sys.stdin.buffer.read(),
                                 headers={"Authorization": "Bearer " + key, "Content-Type": "image/png"})
try:
    with urllib.request.urlopen(request, timeout=60) as response:
        status, body = response.status, response.read()
except urllib.error.HTTPError as error:
    status, body = error.code, error.read()
print(json.dumps({"status": status, "body": json.loads(body)}))
"""


@dataclass
class Container:
    cli: str
    name: str

    def post(self, path: str, body: bytes) -> tuple[int, dict]:
        """POST `body` to the container's inference API at `path`, from inside it."""
        answer = json.loads(subprocess.run([self.cli, "exec", "-i", self.name, "python3", "-c", CLIENT, path],
                                           input=body, capture_output=True, check=True).stdout)
        return answer["status"], answer["body"]

    def health(self) -> dict:
        return json.loads(run(self.cli, "inspect", "--format", "{{json .State.Health}}", self.name, check=True).stdout)

    def wait_healthy(self, timeout_s: float = 300) -> dict:
        """The HEALTHCHECK's state once `healthy`, or when it turned `unhealthy` or time ran out."""
        deadline = time.monotonic() + timeout_s
        while (health := self.health())["Status"] == "starting" and time.monotonic() < deadline:
            time.sleep(2)
        return health

    def main_process_uid(self) -> int:
        """The real uid of the container's PID 1 (the entrypoint), from /proc."""
        status = run(self.cli, "exec", self.name, "cat", "/proc/1/status", check=True).stdout
        return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))

    def stop(self) -> tuple[float, int]:
        """`docker stop` with Docker's default 10 s grace: seconds taken, the container's exit code."""
        started = time.monotonic()
        run(self.cli, "stop", self.name, check=True)
        elapsed = time.monotonic() - started
        return elapsed, int(run(self.cli, "inspect", "--format", "{{.State.ExitCode}}", self.name).stdout)

    def logs(self) -> str:
        logs = run(self.cli, "logs", "--tail", "60", self.name)
        return logs.stdout + logs.stderr


@contextlib.contextmanager
def running(cli: str, tag: str = IMAGE) -> Iterator[Container]:
    """The image started with no network at all; removed afterwards."""
    name = f"mnist-image-test-{os.getpid()}"
    run(cli, "run", "--detach", "--network", "none", "--name", name, tag, check=True)
    try:
        yield Container(cli, name)
    finally:
        run(cli, "rm", "--force", name)
