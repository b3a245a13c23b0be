"""Writes of the booking domain, one module per sub-domain:

- `transitions`: the booking and refund state machines; every status change goes through them.
- `lifecycle`: starting a booking, the one confirm-and-decrement transaction both the webhook and the
  polled success page call, expiry, closing checkouts of times that can no longer be sold.
- `refunds`: refunds with their recorded reason, asked of the provider once; the follow-up after commit.
- `catalog`: merchants, listings and times, the rules of a time's start, capacity and series.

- `reminders`: the e-mail before a booking's time, sent at most once per booking.
- `holds`: the seats a checkout holds while its customer pays; taken, converted, released or lapsed once.
- `waitlist`: customers waiting for a sold-out time; freed seats offered to them as holds of kind offer.

Seats are held by `booking_start` and sold by `booking_confirm` (the hold converted, or free seats
taken by a late payment); held seats are freed only with a transition out of `pending`, sold ones
only with a transition out of `confirmed`, in the same transaction. Side effects (e-mails, refunds at the payment provider) run after commit
and are idempotent, so running them again (a retried webhook, `reconcile`) never repeats them.
"""

from bookings.services.catalog import (
    ONLINE_URL_MAX,
    PLACE_TEXT_MAX,
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
    validate_place,
    validate_reminder_hours,
    validate_series_range,
    validate_series_start_times,
    validate_slot_start,
)
from bookings.services.connect import (
    AccountFacts,
    merchant_stripe_account_attach,
    merchant_stripe_account_deauthorize,
    merchant_stripe_account_sync,
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
    booking_start_from_offer,
    checkouts_close,
    merchant_payments_refusal,
    holds_lapse,
    waitlist_offer_refusal,
)
from bookings.services.waitlist import (
    waitlist_join,
    waitlist_join_refusal,
    waitlist_leave,
    waitlist_offer_is_expired,
    waitlist_offer_lapse,
    waitlist_offers_lapse,
    waitlist_offers_make,
)
from bookings.services.holds import hold_minutes
from bookings.services.reminders import reminders_send
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
    "AccountFacts",
    "merchant_stripe_account_attach",
    "merchant_stripe_account_deauthorize",
    "merchant_stripe_account_sync",
    "merchant_payments_refusal",
    "ALLOWED_TRANSITIONS",
    "BookingError",
    "ConfirmOutcome",
    "ConfirmResult",
    "IllegalTransition",
    "ONLINE_URL_MAX",
    "PLACE_TEXT_MAX",
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
    "booking_start_from_offer",
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
    "reminders_send",
    "slot_cancel",
    "slot_capacity_change",
    "slot_create",
    "slot_selling_set",
    "slot_series_create",
    "validate_capacity",
    "validate_capacity_floor",
    "validate_place",
    "validate_reminder_hours",
    "validate_series_range",
    "validate_series_start_times",
    "validate_slot_start",
    "waitlist_join",
    "waitlist_join_refusal",
    "waitlist_leave",
    "waitlist_offer_is_expired",
    "waitlist_offer_lapse",
    "waitlist_offer_refusal",
    "waitlist_offers_lapse",
    "waitlist_offers_make",
]
