"""Loading a site's policy pack from a TOML file (`--policy-file`)."""

from __future__ import annotations

import pathlib
import tomllib

from policies.packs import PackError, PolicyPack, builtin_pack, pack_from_mapping


def load_pack(policy: str | None, policy_file: pathlib.Path | None) -> PolicyPack:
    """The built-in pack `policy`, or a site pack from `policy_file` (its `base` wins).

    Raises PackError with `file: key: why` problems.
    """
    if policy_file is None:
        return builtin_pack(policy or "default")
    try:
        settings = tomllib.loads(policy_file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PackError([f"{policy_file}: cannot be read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise PackError([f"{policy_file}: not valid TOML: {exc}"]) from None
    if policy is not None and "base" not in settings:
        settings["base"] = policy
    elif policy is not None and settings["base"] != policy:
        raise PackError(
            [f"{policy_file}: base: {settings['base']!r} differs from --policy {policy!r}"]
        )
    try:
        return pack_from_mapping(settings)
    except PackError as exc:
        raise PackError([f"{policy_file}: {p}" for p in exc.problems]) from None
