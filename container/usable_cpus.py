#!/usr/bin/env python3
"""How many CPUs this process may use: its affinity (`taskset`, a CPU set) capped by its cgroup
v2 CPU quota (a container's `--cpus`, Kubernetes' `limits.cpu`), rounded up, at least 1.

    usable_cpus.py [CPU_MAX]    # CPU_MAX: the cgroup file to read, /sys/fs/cgroup/cpu.max by default

Prints the number. scripts/start.sh and the container's entrypoint start that many TorchServe
workers (TS_DEFAULT_WORKERS_PER_MODEL): one per GPU, TorchServe's own choice on a GPU host,
would leave the CPU-side normalizer short of workers (docs/performance.md, "Workers").
Standard library only: it runs in the image, without the repository.
"""
import math
import os
import sys

CPU_MAX = "/sys/fs/cgroup/cpu.max"


def usable_cpus(cpu_max: str = CPU_MAX) -> int:
    cpus = len(os.sched_getaffinity(0))
    try:
        with open(cpu_max) as file:
            quota, period = file.read().split()
    except (OSError, ValueError):   # no cgroup v2 CPU controller here: the affinity decides
        return cpus
    if quota == "max":
        return cpus
    return max(1, min(cpus, math.ceil(int(quota) / int(period))))


if __name__ == "__main__":
    print(usable_cpus(*sys.argv[1:2]))
