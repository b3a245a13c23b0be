"""Structured logs: one event name and its fields per line, as JSON in production.

Only ids, statuses and amounts go into fields; never card data, secrets or signatures.
"""

import datetime as dt
import json
import logging


def log_event(logger: logging.Logger, event: str, *, level: int = logging.INFO, exc_info=False, **fields) -> None:
    if not logger.isEnabledFor(level):
        return
    text = " ".join([event, *(f"{name}={'-' if value in (None, '') else value}" for name, value in fields.items())])
    logger.log(level, text, extra={"event": event, "fields": fields}, exc_info=exc_info)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event and its fields (or the message)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        event = getattr(record, "event", None)
        if event:
            entry["event"] = event
            for name, value in getattr(record, "fields", {}).items():
                entry.setdefault(name, value)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)
