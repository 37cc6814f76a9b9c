"""Helpers shared by the benchmark scripts (run them as `python bench/<script>.py`)."""

import datetime
import os
import platform
import sys


def repo_root():
    """The repository root (the parent of `bench/`)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_name():
    """The CPU model from /proc/cpuinfo, for the machine line under each table."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def print_machine_line():
    """Prints the line under each table: machine, software, date and the command run."""
    import tensorflow as tf

    command = " ".join(["python", f"bench/{os.path.basename(sys.argv[0])}"] + sys.argv[1:])
    print()
    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}. Date: "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}. "
        f"Command: `{command}`"
    )
