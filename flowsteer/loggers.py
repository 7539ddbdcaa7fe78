"""What flowsteer lets libraries print: their warnings and errors, not their progress notes.

The first MLflow client call on a new sqlite store creates its tables and logs it at INFO on stderr
("Creating initial MLflow database tables...", "Updating database tables"); alembic, which runs the schema
migrations, logs one "Running upgrade ..." line per migration wherever INFO reaches a handler (MLflow 3.17 raises
alembic to WARNING itself when it is imported; the rule here does not depend on that). These lines ask nothing of
the user and bury flowsteer's own output. Raising the loggers to WARNING keeps every real warning and error visible.
"""

from __future__ import annotations

import logging

# Logger names as the libraries create them (logging.getLogger(__name__) in their modules).
_PROGRESS_NOTES = (
    "alembic",  # schema migrations: alembic.runtime.migration
    "mlflow.store",  # table creation and upgrades: mlflow.store.db.utils
)


def quiet_library_loggers() -> None:
    """Raise the libraries' progress loggers to WARNING; call before the first MLflow client is made."""
    for name in _PROGRESS_NOTES:
        logging.getLogger(name).setLevel(logging.WARNING)
