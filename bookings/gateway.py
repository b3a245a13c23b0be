"""What the booking domain needs from the payment provider, without knowing which one it is.

`payments.stripe_api` implements it with Stripe; `settings.BOOKINGS_PAYMENT_GATEWAY` names the
implementation, so this app never imports `stripe`.
"""

from dataclasses import dataclass
from functools import cache
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class CheckoutFacts:
    """What the provider says about one checkout session: the only input that can confirm a booking."""

    session_id: str
    client_reference_id: str | None
    metadata_booking_id: str | None
    status: str  # open | complete | expired
    payment_status: str  # paid | unpaid | no_payment_required
    amount_subtotal: int | None
    amount_total: int | None
    currency: str | None
    payment_intent_id: str | None
    customer_id: str | None
    # The Stripe account the session was read on ("" the platform's, else a connected account's);
    # None when the caller cannot say. A booking paid on another account is never settled by it.
    account: str | None = None

    @property
    def is_settled(self) -> bool:
        """Paid in full: by card, or with nothing to pay (a 100% promotion code gives no PaymentIntent)."""
        if self.status != "complete":
            return False
        if self.payment_status == "paid":
            return True
        return self.payment_status == "no_payment_required" and self.amount_total == 0


@dataclass(frozen=True)
class RefundReceipt:
    refund_id: str
    status: str  # succeeded | pending | requires_action | failed | canceled
    amount: int
    failure_reason: str = ""


class PaymentGatewayError(Exception):
    """The provider did not do what was asked. `retryable` says whether asking again can help."""

    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


class PaymentGateway(Protocol):
    def checkout_expire(self, *, session_id: str, stripe_account: str = "") -> CheckoutFacts:
        """Make an open checkout session unpayable and return the session's facts afterwards:
        `expired`, or `complete` when the payment got there first. `stripe_account`: the
        connected account the session lives on ("" = the platform's own)."""

    def refund_create(
        self,
        *,
        payment_intent_id: str,
        amount: int,
        idempotency_key: str,
        metadata: dict[str, str],
        look_first: bool,
        stripe_account: str = "",
        refund_application_fee: bool = False,
    ) -> RefundReceipt:
        """Refund a payment (on `stripe_account`, the connected account it was made on, "" = the
        platform's own). With `look_first`, a refund that already carries this `metadata` (made
        by an earlier attempt whose answer was lost) is returned instead of a new one. With
        `refund_application_fee`, the platform's fee is refunded in proportion too."""


@cache
def _gateway_class(path: str) -> type:
    return import_string(path)


def payment_gateway() -> PaymentGateway:
    return _gateway_class(settings.BOOKINGS_PAYMENT_GATEWAY)()
