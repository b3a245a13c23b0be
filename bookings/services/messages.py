"""Messages from a merchant to the confirmed attendees of a time."""

import uuid

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from bookings.background import enqueue_after_commit
from bookings.models import AttendeeMessage, AttendeeMessageDelivery, Booking, BookingStatus, Slot

MESSAGE_SUBJECT_MAX = 150
MESSAGE_BODY_MAX = 5000


def validate_attendee_message(*, slot: Slot, subject: str, body: str) -> None:
    if not subject.strip():
        raise ValidationError("Write a subject.")
    if not body.strip():
        raise ValidationError("Write the message.")
    if len(subject) > MESSAGE_SUBJECT_MAX or len(body) > MESSAGE_BODY_MAX:
        raise ValidationError(f"Keep the subject under {MESSAGE_SUBJECT_MAX} and the message under {MESSAGE_BODY_MAX} characters.")
    if not slot.listing.merchant.support_email:
        raise ValidationError("Add a support e-mail to your profile first: attendees' replies go there.")
    if not Booking.objects.filter(slot=slot, status=BookingStatus.CONFIRMED).exists():
        raise ValidationError("Nobody is confirmed for this time: there is nobody to write to.")


def attendee_message_send(*, slot: Slot, subject: str, body: str, submission_key: uuid.UUID) -> tuple[AttendeeMessage, bool]:
    """Write a message to everyone confirmed for `slot` now, one delivery per booking, e-mailed
    after commit by a task that claims each delivery before sending it: a form sent twice (the
    same `submission_key`) writes one message, and a retried task sends nobody twice. Returns the
    message and whether it is new."""
    validate_attendee_message(slot=slot, subject=subject, body=body)
    from bookings import tasks

    existing = AttendeeMessage.objects.filter(submission_key=submission_key).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            message = AttendeeMessage.objects.create(
                slot=slot, subject=subject.strip(), body=body.strip(), submission_key=submission_key
            )
            bookings = Booking.objects.filter(slot=slot, status=BookingStatus.CONFIRMED).order_by("pk")
            AttendeeMessageDelivery.objects.bulk_create(
                [AttendeeMessageDelivery(message=message, booking=booking) for booking in bookings]
            )
            enqueue_after_commit(tasks.attendee_message_deliver, message_id=message.pk)
    except IntegrityError:
        # The same form, sent twice at once: the other request wrote it.
        return AttendeeMessage.objects.get(submission_key=submission_key), False
    return message, True
