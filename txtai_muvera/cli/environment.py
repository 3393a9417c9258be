"""
Environment module
"""

import os
import platform
import time

from importlib import metadata

import numpy as np
import torch


def environment():
    """
    Describes the machine and library versions a run used.

    Returns:
        dict
    """

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "txtai": txtaiversion(),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "cuda": torch.cuda.is_available(),
        # CPU contention skews timings
        "loadavg": loadaverage(),
    }


def machinedescription(libraries=("txtai", "fastembed", "pylate")):
    """
    Describes the machine in one line: CPU model, cores, Python and the versions of the libraries installed.

    Args:
        libraries: distributions whose versions are listed when installed

    Returns:
        str
    """

    model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass

    versions = [f"torch {torch.__version__}", f"numpy {np.__version__}"]
    for name in libraries:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass

    return f"{model}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, " + ", ".join(versions)


def loadaverage():
    """
    Reads the 1 minute system load average, which shows when other processes compete for the CPU during a timing.

    Returns:
        load average or None where the platform has none
    """

    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def cputime():
    """
    CPU seconds of this process, user + system, all threads: on a shared machine it moves far less with other load than
    wall time.

    Returns:
        seconds
    """

    return time.process_time()


def processmemory():
    """
    Reads this process's memory counters (Linux /proc; elsewhere only the peak, from getrusage).

    Returns:
        dict with peak RSS, current RSS and its anonymous and file-backed parts, in MiB (None when unknown)
    """

    names = {"peak_rss_mib": "VmHWM", "rss_mib": "VmRSS", "anon_mib": "RssAnon", "file_mib": "RssFile"}
    values = {}
    try:
        with open("/proc/self/status", encoding="utf-8") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in names.values():
                    values[key] = int(value.split()[0]) / 1024
    except OSError:
        # pylint: disable=C0415
        import resource

        # ru_maxrss: KiB on Linux, BSD
        values["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    return {name: round(values[key], 1) if key in values else None for name, key in names.items()}


def folderbytes(path):
    """
    Counts the bytes of every file under a folder.

    Args:
        path: folder

    Returns:
        total bytes
    """

    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def percentiles(latencies):
    """
    Summarises query latencies.

    Args:
        latencies: seconds per query

    Returns:
        dict with p50, p95 and mean in milliseconds
    """

    values = np.asarray(latencies, dtype=np.float64) * 1000
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95)), "mean_ms": float(values.mean())}


def txtaiversion():
    """
    Gets the installed txtai version.

    Returns:
        version string
    """

    return metadata.version("txtai")
