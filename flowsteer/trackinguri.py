"""Tracking URIs never carry a password into output or files.

A URI such as ``http://alice:secret@host:5000`` would be printed, written to config.json and tracking.json, and,
in a sweep, into Ray Tune's state files. flowsteer refuses it before any work and points to MLflow's own
environment variables, which never leave the process environment. Messages that quote a URI (an MLflow
exception's text, say) go through ``redact`` as well.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:\s]*):(?P<password>[^/@\s]*)@")


class CredentialsInUriError(ValueError):
    """A tracking URI holds a password."""


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced by ***."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def without_userinfo(uri: str) -> str:
    parts = urlsplit(uri)
    if not parts.netloc or "@" not in parts.netloc:
        return uri
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def check_no_password(uri: str, where: str) -> None:
    """Raise CredentialsInUriError when ``uri`` holds a password; the message shows it redacted."""
    if _USERINFO.search(uri):
        user, password = CREDENTIAL_ENV
        raise CredentialsInUriError(
            f"{where} {redact(uri)} holds a password, which flowsteer would print and write into run and sweep "
            f"files. Give the URI without it ({without_userinfo(uri)}) and set {user} and {password} in the "
            f"environment instead."
        )


def resolve_tracking_uri(uri: str | None, directory: Path) -> str:
    """The MLflow store, by one rule for train, sweep and report: ``uri``, else $MLFLOW_TRACKING_URI, else a
    sqlite store ``mlflow.db`` in ``directory`` (the working directory; a sweep's storage). A relative sqlite
    path becomes absolute: Ray workers change directory."""
    uri = (
        uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(directory).expanduser().absolute()}/mlflow.db"
    )
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri[len('sqlite:///') :]).absolute()}"
    return uri
