"""A private network namespace, as a Kubernetes pod has: its own loopback, so fixed ports (8080,
8081, ...) are free whatever this machine runs, and one link to this host, so a test reaches it
the way the cluster reaches a pod: by its address, never by its loopback.

The namespace lives as long as the processes in it: `unshare -n` holds it, commands join it
with `nsenter`, and a test that dies leaves nothing behind once those processes are stopped.
"""
import os
import subprocess
from dataclasses import dataclass


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class PrivateNetwork:
    """A namespace joined to this host by a veth pair; `address` is its side of the link."""

    holder: subprocess.Popen
    host_link: str
    address: str

    @classmethod
    def create(cls) -> "PrivateNetwork":
        """Raises OSError or CalledProcessError where namespaces cannot be made (not root)."""
        holder = subprocess.Popen(["unshare", "-n", "sh", "-c", "ip link set lo up && echo up && exec sleep infinity"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if holder.stdout.readline().strip() != "up":
            holder.wait(timeout=10)
            raise subprocess.CalledProcessError(holder.returncode, holder.args, stderr=holder.stderr.read())
        # A link-local /30 per test process, so that two runs on one machine do not share addresses.
        prefix, base = f"169.254.{100 + os.getpid() % 100}", 4 * (os.getpid() // 100 % 63)
        host, guest = f"{prefix}.{base + 1}", f"{prefix}.{base + 2}"
        network = cls(holder, f"pod{holder.pid}", guest)
        guest_link = f"eth{holder.pid}"
        try:
            ip("link", "add", network.host_link, "type", "veth", "peer", "name", guest_link, "netns", str(holder.pid))
            ip("addr", "add", f"{host}/30", "dev", network.host_link)
            ip("link", "set", network.host_link, "up")
            network.run(["ip", "addr", "add", f"{guest}/30", "dev", guest_link], check=True)
            network.run(["ip", "link", "set", guest_link, "up"], check=True)
        except BaseException:
            network.close()
            raise
        return network

    def command(self, command: list[str]) -> list[str]:
        """`command` run inside the namespace."""
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", *map(str, command)]

    def run(self, command: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(command), capture_output=True, text=True, **kwargs)

    def close(self) -> None:
        """Remove the link and let the namespace go (it goes once nothing else runs in it)."""
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True)
        self.holder.kill()
        self.holder.wait()
