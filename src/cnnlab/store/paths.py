"""Where cnnlab may write: run folders strictly inside ``runs_dir``, outputs only where asked.

A run name comes from files people share (recipes, sweeps), so it is checked as untrusted:
:func:`check_run_name` refuses absolute names, empty, ``.`` and ``..`` components and NUL
bytes; :func:`safe_run_path` also resolves symlinks and refuses a folder that would land
outside the resolved ``runs_dir``. :func:`safe_output_path` is for files the user names
(``--out``): it refuses a symlink, so an atomic rename never replaces a link the user did
not mean to write through. Every refusal is a :class:`ConfigError` (exit code 2).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from cnnlab.errors import ConfigError


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an experiment (or sweep) name, or None when it can.

    Pure string checks (no file system): the config schema calls this too.
    """
    if not isinstance(name, str) or not name:
        return "it is empty"
    if "\x00" in name:
        return "it holds a NUL byte"
    if "\\" in name:
        return "it holds a backslash (use '/' between parts)"
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        return "it is an absolute path; a name is relative to runs_dir"
    parts = name.split("/")
    if any(part == "" for part in parts):
        return "it has an empty part ('//' or a leading or trailing '/')"
    if any(part in (".", "..") for part in parts):
        return "it has a '.' or '..' part, which would leave its folder"
    return None


def check_run_name(name: str, what: str = "name") -> str:
    problem = name_problem(name)
    if problem is not None:
        raise ConfigError(f"`{what}` = {name!r} cannot be used: {problem}. Names are parts of "
                          "letters, digits, '_', '-' and '.', joined by '/', and always stay "
                          "inside runs_dir.")
    return name


def check_dir_path(path: str | Path, what: str) -> Path:
    """A folder path from a config or option: no NUL byte (the OS would fail obscurely)."""
    if "\x00" in str(path):
        raise ConfigError(f"`{what}` = {str(path)!r} holds a NUL byte.")
    return Path(path)


def safe_run_path(runs_dir: str | Path, name: str, *parts: str, what: str = "name") -> Path:
    """``runs_dir/name/parts...``, refused (ConfigError) unless it resolves inside ``runs_dir``.

    Symlinks are followed: a link inside runs_dir pointing elsewhere does not let a name out.
    The folder need not exist yet. Sweeps and other writers of run folders call this too.
    """
    root = check_dir_path(runs_dir, "runs_dir")
    check_run_name(name, what)
    for part in parts:
        check_run_name(part, what)
    target = root.joinpath(name, *parts)
    resolved_root = root.expanduser().resolve()
    resolved = target.expanduser().resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise ConfigError(f"`{what}` = {name!r} resolves to {resolved}, outside runs_dir "
                          f"{resolved_root} (through a symbolic link): refusing to write there.")
    return target


def safe_output_path(path: str | Path, what: str = "--out") -> Path:
    """A file the user asked for: refused if it is a symlink or a folder, or holds a NUL byte.

    The file is then written atomically (temp file beside it, renamed), so an existing file is
    replaced whole or not at all, and a link is never followed to overwrite its target.
    """
    text = str(path)
    if "\x00" in text:
        raise ConfigError(f"{what} {text!r} holds a NUL byte.")
    path = Path(path)
    if path.is_symlink():
        raise ConfigError(f"{what} {path} is a symbolic link (to {path.readlink()}); refusing to "
                          "write through it. Name the file itself.")
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; name a file to write.")
    if path.parent != path and not path.parent.is_dir() and path.parent.exists():
        raise ConfigError(f"{what}: {path.parent} is not a folder.")
    return path
