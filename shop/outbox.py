"""The demo's outbox: every e-mail the site sends is written to a file of its own in one folder
(settings.EMAIL_FILE_PATH), named by when it was sent, to whom and about what, so it can be read
as it is instead of being dug out of the console between the server's log lines.

`<time>-<nnn>-<recipient>-<subject>.txt` holds the headers and the plain-text body, undecoded;
an HTML version, when the message has one, sits beside it as `<same name>.html`. Only
`manage.py demo` selects this backend; production sends through SMTP.
"""

import itertools
import logging
import re
import threading
import unicodedata
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

logger = logging.getLogger(__name__)

_sequence = itertools.count(1)
_sequence_lock = threading.Lock()


def _slug(text: str, limit: int) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9@.]+", "-", ascii_text.lower()).strip("-.")[:limit].strip("-.") or "none"


class OutboxEmailBackend(BaseEmailBackend):
    def __init__(self, *, file_path: str | None = None, fail_silently: bool = False, **kwargs):
        super().__init__(fail_silently=fail_silently, **kwargs)
        self.directory = Path(file_path or settings.EMAIL_FILE_PATH)

    def send_messages(self, email_messages) -> int:
        written = 0
        for message in email_messages:
            try:
                path = self._write(message)
            except OSError:
                if not self.fail_silently:
                    raise
                continue
            logger.info("E-mail %r written to %s", message.subject, path)
            written += 1
        return written

    def _write(self, message) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        now = timezone.localtime()
        recipients = message.recipients()
        about = f"{_slug(recipients[0] if recipients else '', 40)}-{_slug(message.subject, 60)}"
        headers = [("From", message.from_email), ("To", ", ".join(message.to))]
        for name, values in (("Cc", message.cc), ("Bcc", message.bcc), ("Reply-To", message.reply_to)):
            if values:
                headers.append((name, ", ".join(values)))
        headers += [("Subject", message.subject), ("Date", f"{now:%Y-%m-%d %H:%M:%S %Z}")]
        text = "\n".join(f"{name}: {value}" for name, value in headers) + "\n\n" + message.body.rstrip("\n") + "\n"
        html = next((body for body, mimetype in getattr(message, "alternatives", []) if mimetype == "text/html"), None)
        while True:
            with _sequence_lock:
                number = next(_sequence)
            path = self.directory / f"{now:%Y%m%d-%H%M%S}-{number:03d}-{about}.txt"
            try:
                file = path.open("x", encoding="utf-8")
            except FileExistsError:
                continue
            break
        footer = []
        if html is not None:
            path.with_suffix(".html").write_text(str(html), encoding="utf-8")
            footer.append(f"HTML version: {path.with_suffix('.html').name}")
        for attachment in message.attachments:
            filename = attachment[0] if isinstance(attachment, tuple) else attachment.get_filename()
            footer.append(f"Attachment: {filename}")
        with file:
            file.write(text + ("\n-- \n" + "\n".join(footer) + "\n" if footer else ""))
        return path
