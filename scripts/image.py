"""`make image-base` and `make image`: the serving image's base and build (harness/docker.py)."""
import argparse

from harness import docker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("step", choices=["base", "build"],
                        help=f"base: {docker.LOCAL_BASE} with debootstrap (skipped when it exists); build: the image")
    parser.add_argument("--ca-bundle", help="a CA bundle for a TLS-intercepting proxy, passed as a build secret")
    args = parser.parse_args()
    if args.step == "build":
        docker.build_image(args.ca_bundle)
        return
    with docker.engine() as cli:
        seconds = docker.build_local_base(cli)
        print(f"[image] {docker.LOCAL_BASE} " + ("exists: kept" if seconds is None else f"made in {seconds:.0f} s"))


if __name__ == "__main__":
    main()
