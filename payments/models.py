from django.db import models
from django.utils import timezone as django_timezone


class StripeEvent(models.Model):
    """Every webhook event received, so each is processed once and a failed one can be replayed."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSING = "processing", "Processing"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"

    event_id = models.CharField(max_length=255)
    # The connected account the event is of (`event.account`, Connect endpoint); "" for the
    # platform's own events. An event is recorded once per (account, id).
    account = models.CharField(max_length=255, blank=True, default="")
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(default=django_timezone.now)
    # When a delivery claimed the event for processing (status "processing"): one at a time.
    claimed_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table it has always had (it was bookings.StripeEvent): moved without copying a row.
        db_table = "bookings_stripeevent"
        ordering = ["-received_at", "-pk"]
        indexes = [models.Index(fields=["status", "received_at"], name="stripe_event_status_idx")]
        constraints = [models.UniqueConstraint(fields=["account", "event_id"], name="stripe_event_once_per_account")]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id} ({self.status})"
