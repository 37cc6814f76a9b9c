"""Helpers shared by the benchmark scripts (run them as `python bench/<script>.py`)."""

import os
import platform


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
