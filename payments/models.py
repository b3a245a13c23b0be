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


class StripeBudget(models.Model):
    """A token bucket of Stripe requests shared by every process, kept as one timestamp (GCRA):
    `tat_us` is the moment, in microseconds since the epoch, at which the bucket would be full
    again. Used only when there is no Redis (payments/budget.py)."""

    name = models.CharField(max_length=40, primary_key=True)
    tat_us = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"Stripe budget {self.name}"


class CheckoutQueueEntry(models.Model):
    """A checkout start waiting for its turn to open a Checkout Session, because Stripe's budget
    was spent when it arrived (or Stripe answered 429). Its booking already holds its seats. The
    primary key is the arrival order; a turn is claimed by a conditional update of `status`."""

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting"
        OPENING = "opening", "Opening"
        OPENED = "opened", "Opened"
        TIMED_OUT = "timed_out", "Timed out"
        SOLD_OUT = "sold_out", "Sold out"
        ENDED = "ended", "Ended"

    booking = models.OneToOneField("bookings.Booking", on_delete=models.CASCADE, related_name="checkout_queue_entry")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.WAITING)
    success_url = models.TextField()
    cancel_url = models.TextField()
    # The address the visitor had proved (normalised) when they pressed Book, or "": which
    # Stripe Customer the session is opened for (payments.checkout._checkout_customer).
    proven_email = models.CharField(max_length=254, blank=True)
    queued_at = models.DateTimeField(default=django_timezone.now)
    # When a process claimed the turn to call Stripe; a claim older than a lease is taken back.
    claimed_at = models.DateTimeField(null=True, blank=True)
    checkout_url = models.TextField(blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["status", "id"], name="checkout_queue_status_idx")]

    def __str__(self) -> str:
        return f"Queue entry {self.pk} of booking {self.booking_id} ({self.status})"
