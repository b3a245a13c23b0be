"""Writes of the booking domain, one module per sub-domain:

- `transitions`: the booking and refund state machines; every status change goes through them.
- `lifecycle`: starting a booking, the one confirm-and-decrement transaction both the webhook and the
  polled success page call, expiry, closing checkouts of times that can no longer be sold.
- `refunds`: refunds with their recorded reason, asked of the provider once; the follow-up after commit.
- `catalog`: merchants, listings and times, the rules of a time's start, capacity and series.

- `customer_changes`: a customer cancels (under the terms the booking was sold with) or moves their booking.
- `holds`: the seats a checkout holds while its customer pays; taken, converted, released or lapsed once.

Seats are held by `booking_start` and sold by `booking_confirm` (the hold converted, or free seats
taken by a late payment); held seats are freed only with a transition out of `pending`, sold ones
only with a transition out of `confirmed`, in the same transaction. Side effects (e-mails, refunds at the payment provider) run after commit
and are idempotent, so running them again (a retried webhook, `reconcile`) never repeats them.
"""

from bookings.services.catalog import (
    CANCEL_FREE_HOURS_MAX,
    bookings_terms_upgrade,
    validate_cancellation_policy,
    SERIES_MAX_DAYS,
    SERIES_MAX_SLOTS,
    SERIES_MAX_START_TIMES,
    SLOT_CAPACITY_MAX,
    SLOT_HORIZON,
    SeriesCreated,
    SlotCancellation,
    listing_archive,
    listing_create,
    listing_restore,
    listing_update,
    merchant_create,
    merchant_update,
    slot_cancel,
    slot_capacity_change,
    slot_create,
    slot_selling_set,
    slot_series_create,
    validate_capacity,
    validate_capacity_floor,
    validate_series_range,
    validate_series_start_times,
    validate_slot_start,
)
from bookings.services.lifecycle import (
    ConfirmOutcome,
    ConfirmResult,
    booking_checkout_abandon,
    booking_checkout_attach,
    booking_confirm,
    booking_expire,
    booking_reference,
    booking_start,
    checkouts_close,
    holds_lapse,
)
from bookings.services.customer_changes import TermsChanged, booking_customer_cancel, booking_reschedule
from bookings.services.holds import hold_minutes
from bookings.services.refunds import (
    REFUND_SUBMIT_LEASE,
    RefundInProgress,
    booking_follow_up,
    booking_refund,
    booking_refund_retry,
    booking_refunds_resubmit,
    refund_record_created,
    refund_record_failure,
    refund_record_update,
    refund_submit,
)
from bookings.services.transitions import (
    ALLOWED_TRANSITIONS,
    REFUND_COUNTED,
    REFUND_TRANSITIONS,
    BookingError,
    IllegalTransition,
    PaymentFactsMismatch,
    RefundNotCreated,
    booking_transition,
    refund_transition,
)

__all__ = [
    "CANCEL_FREE_HOURS_MAX",
    "TermsChanged",
    "booking_customer_cancel",
    "booking_reschedule",
    "bookings_terms_upgrade",
    "validate_cancellation_policy",
    "ALLOWED_TRANSITIONS",
    "BookingError",
    "ConfirmOutcome",
    "ConfirmResult",
    "IllegalTransition",
    "PaymentFactsMismatch",
    "REFUND_COUNTED",
    "REFUND_SUBMIT_LEASE",
    "REFUND_TRANSITIONS",
    "RefundInProgress",
    "RefundNotCreated",
    "SERIES_MAX_DAYS",
    "SERIES_MAX_SLOTS",
    "SERIES_MAX_START_TIMES",
    "SLOT_CAPACITY_MAX",
    "SLOT_HORIZON",
    "SeriesCreated",
    "SlotCancellation",
    "booking_checkout_abandon",
    "booking_checkout_attach",
    "booking_confirm",
    "booking_expire",
    "booking_follow_up",
    "booking_reference",
    "booking_refund",
    "booking_refund_retry",
    "booking_refunds_resubmit",
    "booking_start",
    "booking_transition",
    "checkouts_close",
    "hold_minutes",
    "holds_lapse",
    "listing_archive",
    "listing_create",
    "listing_restore",
    "listing_update",
    "merchant_create",
    "merchant_update",
    "refund_record_created",
    "refund_record_failure",
    "refund_record_update",
    "refund_submit",
    "refund_transition",
    "slot_cancel",
    "slot_capacity_change",
    "slot_create",
    "slot_selling_set",
    "slot_series_create",
    "validate_capacity",
    "validate_capacity_floor",
    "validate_series_range",
    "validate_series_start_times",
    "validate_slot_start",
]
