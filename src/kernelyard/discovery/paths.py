"""Where kernelspecs live: Jupyter's data path, in Jupyter's priority order.

The order is jupyter_core's ``jupyter_path("kernels")``:

1. every entry of ``JUPYTER_PATH``;
2. the user's data dir (``JUPYTER_DATA_DIR``, else ``$XDG_DATA_HOME/jupyter``
   or ``~/.local/share/jupyter``; ``~/Library/Jupyter`` on macOS) and the
   Python user base's ``share/jupyter``;
3. ``{sys.prefix}/share/jupyter``;
4. the system dirs ``/usr/local/share/jupyter`` and ``/usr/share/jupyter``.

2 and 3 swap places inside a virtualenv or a non-base conda env the user owns,
or when ``JUPYTER_PREFER_ENV_PATH`` says so. The first directory that has a
kernel of a given name wins.

The environment is a parameter: callers pass ``os.environ`` (or a test's dict).
"""

from __future__ import annotations

import os
import site
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["jupyter_data_dir", "jupyter_runtime_dir", "kernel_dirs", "prefer_env_path"]

_FALSE = {"no", "n", "false", "off", "0", "0.0"}
SYSTEM_DIRS = ("/usr/local/share/jupyter", "/usr/share/jupyter")


def jupyter_data_dir(environ: Mapping[str, str]) -> Path:
    """The user's Jupyter data directory."""
    if environ.get("JUPYTER_DATA_DIR"):
        return Path(environ["JUPYTER_DATA_DIR"])
    home = Path("~").expanduser().resolve()
    if sys.platform == "darwin":
        return home / "Library" / "Jupyter"
    xdg = environ.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    return Path(xdg) / "jupyter"


def jupyter_runtime_dir(environ: Mapping[str, str]) -> Path:
    """Where connection files go: ``JUPYTER_RUNTIME_DIR``, else ``{data dir}/runtime``."""
    if environ.get("JUPYTER_RUNTIME_DIR"):
        return Path(environ["JUPYTER_RUNTIME_DIR"])
    return jupyter_data_dir(environ) / "runtime"


def _owned_by_me(path: Path) -> bool:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return path.stat().st_uid == os.geteuid()
    except OSError:
        return os.access(path, os.W_OK)


def prefer_env_path(environ: Mapping[str, str]) -> bool:
    """Whether ``{sys.prefix}/share/jupyter`` outranks the user's dirs."""
    if "JUPYTER_PREFER_ENV_PATH" in environ:
        return environ["JUPYTER_PREFER_ENV_PATH"].lower() not in _FALSE
    if sys.prefix != sys.base_prefix and _owned_by_me(Path(sys.prefix)):
        return True
    conda_prefix = environ.get("CONDA_PREFIX")
    return bool(
        conda_prefix
        and sys.prefix.startswith(conda_prefix)
        and environ.get("CONDA_DEFAULT_ENV", "base") != "base"
        and _owned_by_me(Path(sys.prefix))
    )


def kernel_dirs(environ: Mapping[str, str]) -> list[Path]:
    """The kernelspec directories to search, highest priority first."""
    paths: list[str] = []
    if environ.get("JUPYTER_PATH"):
        paths.extend(p.rstrip(os.sep) for p in environ["JUPYTER_PATH"].split(os.pathsep) if p)
    user = [str(jupyter_data_dir(environ))]
    if site.ENABLE_USER_SITE and site.getuserbase():
        user_share = str(Path(site.getuserbase(), "share", "jupyter"))
        if user_share not in user:
            user.append(user_share)
    env = [p for p in (str(Path(sys.prefix, "share", "jupyter")),) if p not in SYSTEM_DIRS]
    paths.extend([*env, *user] if prefer_env_path(environ) else [*user, *env])
    paths.extend(p for p in SYSTEM_DIRS if p not in paths)
    return [Path(p, "kernels") for p in paths]
