"""The project's Fast DDS profile (``fastdds_profile.xml`` beside this file) and how a process adopts it.

Fast DDS reads ``FASTDDS_DEFAULT_PROFILES_FILE`` once, when the process's first participant is
created (``rclpy.init``), so ``use_profile`` must run before that. It never overrides a profile the
user chose, nor a non-Fast-DDS middleware.
"""
from __future__ import annotations

import os
from pathlib import Path

PROFILE = Path(__file__).with_name("fastdds_profile.xml")
PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def use_profile(env: dict | None = None) -> str | None:
    """Point Fast DDS at the project's profile unless a profile, builtin-transport choice or another
    RMW is already set. Returns the profile in force (None when left to the user's settings)."""
    env = os.environ if env is None else env
    if env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") not in ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp"):
        return None
    for var in PROFILE_VARS:
        if env.get(var):
            return env[var]
    if env.get("FASTDDS_BUILTIN_TRANSPORTS"):
        return None
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    return str(PROFILE)
