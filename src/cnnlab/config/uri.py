"""The shape of an MLflow tracking URI, checked when the experiment file is read.

A typo in the URI must stop a run before training starts (exit 2), not after an hour of
training when the first upload fails; whether the server is up is a different matter, decided
at run time (training goes on, ``cnnlab sync`` uploads later).
"""

from __future__ import annotations

from urllib.parse import urlsplit

# Stores MLflow's client can talk to; `file:` and the SQLAlchemy databases write directly.
_NETWORK = ("http", "https")
_DATABASES = ("sqlite", "postgresql", "mysql", "mssql")


def check_tracking_uri(uri: str) -> str:
    """``uri`` if it is a usable MLflow tracking URI, else ValueError saying what is wrong."""
    hint = ("an MLflow tracking URI looks like http://127.0.0.1:5000, file:./mlruns or "
            "sqlite:///mlflow.db")
    if not uri or uri != uri.strip() or any(c.isspace() for c in uri):
        raise ValueError(f"{uri!r} is not a tracking URI (empty or holds spaces): {hint}")
    if uri == "databricks":  # MLflow's name for the workspace of the default profile
        return uri
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+", 1)[0].lower()
    if scheme in _NETWORK:
        try:
            port = parts.port  # raises on a port that is not a number in range
        except ValueError:
            raise ValueError(f"{uri!r} has a malformed port: {hint}") from None
        if not parts.hostname:
            raise ValueError(f"{uri!r} names no host: {hint}")
        del port
    elif scheme == "file":
        if not (parts.path or parts.netloc):
            raise ValueError(f"{uri!r} names no folder: {hint}")
    elif scheme in _DATABASES:
        if not (parts.path or parts.netloc):
            raise ValueError(f"{uri!r} names no database: {hint}")
    elif scheme == "databricks":
        pass
    else:
        raise ValueError(f"{uri!r} has no known scheme ({parts.scheme or 'none'}; allowed: http, "
                         f"https, file, {', '.join(_DATABASES)}, databricks): {hint}")
    return uri
