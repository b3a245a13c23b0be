"""Merchants' connected accounts (Stripe Connect): which account a merchant is paid on, and what
the provider last said of it. A merchant whose account cannot take charges cannot sell
(`Merchant.can_take_payments`); one rejected or disconnected alerts the operator."""

import datetime as dt
import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from bookings import tasks
from bookings.background import enqueue_after_commit
from bookings.models import Merchant
from common.logs import log_event

log = logging.getLogger("bookings.connect")


@dataclass(frozen=True)
class AccountFacts:
    """What the provider says of a connected account (an `account` object)."""

    account_id: str
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    requirements_due: list[str] = field(default_factory=list)
    disabled_reason: str = ""


def merchant_stripe_account_attach(*, merchant: Merchant, account_id: str, account_type: str) -> Merchant:
    """Record the connected account just created for a merchant (who had none, or whose account
    was disconnected or rejected). Bookings already started keep the account they recorded."""
    with transaction.atomic():
        merchant = Merchant.objects.select_for_update().get(pk=merchant.pk)
        merchant.stripe_account_id = account_id
        merchant.stripe_account_type = account_type
        merchant.stripe_charges_enabled = False
        merchant.stripe_payouts_enabled = False
        merchant.stripe_details_submitted = False
        merchant.stripe_requirements_due = []
        merchant.stripe_disabled_reason = ""
        merchant.stripe_account_synced_at = None
        merchant.stripe_account_deauthorized_at = None
        merchant.save()
    log_event(log, "merchant_stripe_account_attached", merchant=merchant.pk, account=account_id)
    return merchant


def merchant_stripe_account_sync(*, facts: AccountFacts, as_of: dt.datetime | None = None) -> Merchant | None:
    """Keep the merchant's copy of their account's state as the provider says it `as_of` (an
    `account.updated` event's time; now when the account was just read). An older report than
    the one kept changes nothing, so events arriving out of order never undo a newer state.
    The account turning rejected alerts the operator, once. Returns None for an account that is
    no merchant's."""
    as_of = as_of or timezone.now()
    newly_rejected = False
    with transaction.atomic():
        merchant = (
            Merchant.objects.select_for_update()
            .filter(stripe_account_id=facts.account_id)
            .filter(Q(stripe_account_synced_at__isnull=True) | Q(stripe_account_synced_at__lte=as_of))
            .first()
        )
        if merchant is None:
            return Merchant.objects.filter(stripe_account_id=facts.account_id).first()
        was_rejected = merchant.stripe_account_rejected
        merchant.stripe_charges_enabled = facts.charges_enabled
        merchant.stripe_payouts_enabled = facts.payouts_enabled
        merchant.stripe_details_submitted = facts.details_submitted
        merchant.stripe_requirements_due = sorted(facts.requirements_due)
        merchant.stripe_disabled_reason = facts.disabled_reason[:255]
        merchant.stripe_account_synced_at = as_of
        merchant.save()
        newly_rejected = merchant.stripe_account_rejected and not was_rejected
        if newly_rejected:
            _operator_alert(merchant, f"Stripe rejected the connected account of {merchant.display_name}")
    log_event(
        log,
        "merchant_stripe_account_synced",
        merchant=merchant.pk,
        account=facts.account_id,
        charges_enabled=facts.charges_enabled,
        payouts_enabled=facts.payouts_enabled,
        disabled_reason=facts.disabled_reason,
    )
    return merchant


def merchant_stripe_account_deauthorize(*, account_id: str) -> Merchant | None:
    """The merchant disconnected their account from the platform: sales stop at once (no call on
    that account can be made any more) and the operator is alerted, once."""
    with transaction.atomic():
        merchant = Merchant.objects.select_for_update().filter(stripe_account_id=account_id).first()
        if merchant is None or merchant.stripe_account_deauthorized_at is not None:
            return merchant
        merchant.stripe_account_deauthorized_at = timezone.now()
        merchant.stripe_charges_enabled = False
        merchant.stripe_payouts_enabled = False
        merchant.save()
        _operator_alert(merchant, f"{merchant.display_name} disconnected their Stripe account from the platform")
    return merchant


def _operator_alert(merchant: Merchant, what: str) -> None:
    log_event(
        log,
        "merchant_stripe_account_lost",
        level=logging.ERROR,
        merchant=merchant.pk,
        account=merchant.stripe_account_id,
        what=what,
        disabled_reason=merchant.stripe_disabled_reason,
    )
    enqueue_after_commit(tasks.operator_alert_send, subject=what, message=(
        f"{what} (account {merchant.stripe_account_id}, merchant #{merchant.pk}).\n"
        f"Stripe's reason: {merchant.stripe_disabled_reason or 'none given'}.\n"
        "Their listings now say they are not taking bookings. Contact the merchant; bookings already "
        "paid stay on their account, and refunds of them need the account connected again."
    ))
