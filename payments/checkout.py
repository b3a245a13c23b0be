"""The customer's path through payment: open a checkout, then learn how it ended."""

import hashlib
import logging
import queue
import re
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from bookings import selectors
from bookings.customers import customer_email_normalise, proven_customer_record
from common.logs import log_event
from common.signed_ids import signed_id, signed_id_read
from bookings.models import Booking, BookingStatus, Slot, WaitlistEntry
from bookings.selectors import pending_checkouts_unsellable
from bookings.services import (
    BookingError,
    PaymentFactsMismatch,
    RefundNotCreated,
    booking_checkout_abandon,
    booking_checkout_attach,
    booking_confirm,
    booking_hold_ensure,
    booking_start,
    booking_start_from_offer,
    checkouts_close,
)
from payments import stripe_api
from payments.budget import budget_is_limited, budget_take
from payments.checkout_queue import (
    queue_claim_next,
    queue_claim_next_id,
    queue_claimed_entry,
    queue_end,
    queue_has_waiting,
    queue_join,
    queue_opened,
    queue_put_back,
    queue_take_back_lost_claims,
    queue_time_out_overdue,
    queue_token,
)
from payments.models import CheckoutQueueEntry
from payments.promotions import listing_product

log = logging.getLogger("shop.checkout")

CHECKOUT_SESSION_ID = re.compile(r"cs_(test|live)_[A-Za-z0-9]{1,250}")


def is_checkout_session_id(value: str) -> bool:
    # fullmatch: "$" would also accept a trailing newline.
    return bool(CHECKOUT_SESSION_ID.fullmatch(value or ""))


# In a cancel_url, stands for the booking's signed reference (checkout_draft_reference), so that
# the listing can fill the form in again with the customer's choices when they come back.
CHECKOUT_DRAFT_MARKER = "{BOOKING_DRAFT}"
_DRAFT_SALT = "shop.checkout.draft"
# How long after the checkout opened its cancel address still fills the form in.
CHECKOUT_DRAFT_MAX_AGE = timedelta(days=1)


def checkout_draft_reference(booking: Booking) -> str:
    """An unguessable reference to the booking (signed with SECRET_KEY, dated), for its cancel_url."""
    return signed_id(booking.pk, salt=_DRAFT_SALT)


def checkout_draft_booking(reference: str, *, listing) -> Booking | None:
    """The not-yet-paid booking of this listing a cancel address names, if the reference is
    genuine and recent; None otherwise (nothing of anyone is shown for a wrong one)."""
    booking_id = signed_id_read(reference, salt=_DRAFT_SALT, max_age=CHECKOUT_DRAFT_MAX_AGE)
    if booking_id is None:
        return None
    return selectors.unpaid_booking_of_listing(booking_id=booking_id, listing=listing)


@dataclass(frozen=True)
class StartedCheckout:
    """An opened checkout (`url` is Stripe's page), or one waiting in line (`queue_token` names
    its waiting page, `url` is "")."""

    booking: Booking
    url: str
    queue_token: str = ""


def _checkout_customer(booking: Booking, proven_email: str) -> str:
    """The Stripe Customer a booking is paid as, or "" for one Checkout makes, on the account the
    booking is paid on (with Connect, the merchant's connected account: a Customer lives on one
    account only). A visitor who has proved the booking's address pays as that address's one
    Customer on that account (so its portal shows all their receipts from this merchant: made once
    per person and account, then no call at all); anyone else gets a Customer of the booking's own,
    which Checkout creates on the session's account in the same call that opens the session and
    which is recorded when the session completes, and whose receipts only a proven owner of the
    address opens."""
    account = booking.stripe_account_id
    address = customer_email_normalise(booking.customer_email)
    if not proven_email or proven_email != address:
        return ""
    known = selectors.proven_customer_of(address, stripe_account=account)
    if known is not None:
        return known.stripe_customer_id
    digest = hashlib.sha256(f"{address}\n{booking.customer_name}".encode()).hexdigest()[:40]
    created = stripe_api.customer_create(
        email=booking.customer_email,
        name=booking.customer_name,
        idempotency_key=f"proven-customer-{digest}",
        stripe_account=account,
    )
    return proven_customer_record(email=address, stripe_customer_id=created, stripe_account=account).stripe_customer_id


def checkout_start(
    *,
    slot: Slot,
    quantity: int,
    customer_email: str,
    customer_name: str,
    success_url: str,
    cancel_url: str,
    proven_email: str = "",
) -> StartedCheckout:
    """Create a pending booking holding its seats, and its Stripe Checkout Session, which
    expires when the hold ends. `proven_email` is the address the visitor has proved
    (normalised), if any: see `_checkout_customer`.

    When Stripe's budget (payments/budget.py) is spent, or others are already in line, or Stripe
    answers 429, the booking keeps its seats and waits in line instead (payments/checkout_queue.py):
    the result then names its waiting page. With room in the budget and nobody in line the session
    opens at once, at the cost of one atomic take.

    Raises BookingError when the slot cannot be booked (also when its sales stopped while the
    session was opening: the session is then expired) and PaymentsUnavailable when Stripe could
    not open a session for another reason; the booking then expires and its seats are released
    at once, so nothing is left half-made.
    """
    booking = booking_start(slot=slot, quantity=quantity, customer_email=customer_email, customer_name=customer_name)
    paced = budget_is_limited()
    if paced and (queue_has_waiting() or not budget_take()):
        return _checkout_queue(booking, success_url=success_url, cancel_url=cancel_url, proven_email=proven_email)
    try:
        return _checkout_open(
            booking, success_url=success_url, cancel_url=cancel_url, proven_email=proven_email, abandon_on_failure=False
        )
    except stripe_api.StripeRateLimited:
        if not paced:
            booking_checkout_abandon(booking=booking)
            raise
        log_event(log, "checkout_rate_limited", level=logging.WARNING, booking=booking.pk)
        return _checkout_queue(booking, success_url=success_url, cancel_url=cancel_url, proven_email=proven_email)
    except stripe_api.PaymentsUnavailable:
        booking_checkout_abandon(booking=booking)
        raise


def _checkout_queue(booking: Booking, *, success_url: str, cancel_url: str, proven_email: str) -> StartedCheckout:
    entry = queue_join(booking=booking, success_url=success_url, cancel_url=cancel_url, proven_email=proven_email)
    return StartedCheckout(booking=booking, url="", queue_token=queue_token(entry))


def checkout_start_from_offer(
    *, entry: WaitlistEntry, customer_name: str, success_url: str, cancel_url: str, proven_email: str = ""
) -> StartedCheckout:
    """Pay for seats offered from the waitlist through the normal checkout: the offer's hold
    becomes the booking's checkout hold (never free in between) and its Checkout Session opens.
    Raises BookingError when the offer cannot be taken up; when Stripe could not open a session
    the seats go back to being the customer's offer (PaymentsUnavailable is raised)."""
    booking = booking_start_from_offer(entry=entry, customer_name=customer_name)
    return _checkout_open(booking, success_url=success_url, cancel_url=cancel_url, proven_email=proven_email)


def _checkout_open(
    booking: Booking, *, success_url: str, cancel_url: str, proven_email: str, abandon_on_failure: bool = True
) -> StartedCheckout:
    slot = booking.slot
    try:
        cancel_url = cancel_url.replace(CHECKOUT_DRAFT_MARKER, checkout_draft_reference(booking))
        customer_id = _checkout_customer(booking, proven_email)
        hold = selectors.booking_open_hold(booking)
        # The listing's product on the account the session is made on, so its merchant's codes apply.
        product_id = listing_product(slot.listing, stripe_account=booking.stripe_account_id)
        opened = stripe_api.checkout_open(
            booking=booking,
            customer_id=customer_id,
            success_url=success_url,
            cancel_url=cancel_url,
            hold_until=hold.expires_at if hold else None,
            product_id=product_id,
        )
    except stripe_api.PaymentsUnavailable:
        if abandon_on_failure:
            booking_checkout_abandon(booking=booking)
        raise
    booking_checkout_attach(
        booking=booking, session_id=opened.session_id, expires_at=opened.expires_at, customer_id=opened.customer_id
    )
    if pending_checkouts_unsellable(slot_id=slot.pk).filter(pk=booking.pk).exists():
        # The merchant stopped selling this time while the session was being opened, after
        # their own sweep of open sessions had looked: this session is closed here instead.
        checkouts_close(slot_id=slot.pk)
        raise BookingError("This time is no longer on sale. Please pick another one.")
    return StartedCheckout(booking=booking, url=opened.url)


def checkout_queue_drive(*, max_opens: int = 1, now=None) -> int:
    """Give turns in the fair queue, earliest first: end the rows that waited too long, then, while
    someone waits and the budget has a token, claim the earliest waiting row and open its Checkout
    Session (no lock held during the call). A 429 or an unreachable Stripe puts the row back in its
    place and stops this round; a booking whose seats are gone ends `sold_out` (its page offers the
    waitlist). Called by every waiting page's poll (one turn each) and by the
    `checkout_queue_drive` task. Returns the number of sessions opened."""
    queue_take_back_lost_claims(now=now)
    queue_time_out_overdue(now=now)
    opened = 0
    while opened < max_opens:
        if not queue_has_waiting() or not budget_take():
            break
        entry = queue_claim_next(now=now)
        if entry is None:
            break
        if not _queue_turn(entry):
            break
        opened += 1
    return opened


def queue_driven_by_pages() -> bool:
    """Whether the waiting pages' polls give the turns: only with no Celery broker (the demo, a
    laptop), where no beat runs `checkout_queue_drive_for`. With one, a poll only reads its place,
    so a thousand people in line cost the web tier reads, not Stripe calls."""
    return not settings.CELERY_BROKER_URL


# A turn's Stripe call takes a few hundred milliseconds, so the line moves at the budget's pace
# only with several calls in flight: at 25 a second and Stripe's p99 of 0.9 s, about 23.
QUEUE_OPENERS = 24


def checkout_queue_drive_for(
    *, seconds: float, openers: int = QUEUE_OPENERS, clock=time.monotonic, pause=time.sleep
) -> int:
    """Drive the fair queue for `seconds` at the budget's pace (beat's `checkout_queue_drive`
    task): end the rows that waited too long, then, while someone waits, take a token as soon as
    the budget has one, claim the earliest waiting row and hand it to an opener thread, which
    gives it its turn (`_queue_turn`): at most `openers` Stripe calls at once, each under no lock.
    Openers are started as the calls in flight need them and keep their database connection for
    the run. Ends early when nobody waits. A 429 or an unreachable Stripe puts that row back in
    its place and ends the run: the next one, a beat later, tries again. Returns the turns given
    (as `checkout_queue_drive`), once every call begun has ended."""
    deadline = clock() + seconds
    queue_take_back_lost_claims()
    queue_time_out_overdue()
    token_pause = 1 / max(settings.STRIPE_REQUESTS_PER_SECOND, 1.0)
    free = threading.BoundedSemaphore(openers)
    claimed: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    stripe_busy = threading.Event()
    turns: list[CheckoutQueueEntry] = []
    threads: list[threading.Thread] = []
    in_flight = [0]
    in_flight_lock = threading.Lock()

    def opener() -> None:
        try:
            while (entry_id := claimed.get()) is not None:
                entry = None
                try:
                    entry = queue_claimed_entry(entry_id)
                    if _queue_turn(entry):
                        turns.append(entry)
                    else:
                        stripe_busy.set()
                except Exception as error:  # noqa: BLE001 - one turn's fault must not stop the line
                    log_event(log, "checkout_queue_turn_failed", level=logging.ERROR,
                              booking=entry.booking_id if entry else None, entry=entry_id, error=type(error).__name__)
                    if entry is not None:
                        queue_put_back(entry=entry)
                    stripe_busy.set()
                finally:
                    with in_flight_lock:
                        in_flight[0] -= 1
                    free.release()
        finally:
            connection.close()

    if not queue_has_waiting():
        return 0
    # One thread gives every turn, so each statement here is paid once per turn: the budget's
    # take and the claim's two. The line emptied meanwhile shows as a claim of nothing (one
    # token unused, once).
    while clock() < deadline and not stripe_busy.is_set():
        if not free.acquire(timeout=max(0.0, deadline - clock())):
            break
        if not budget_take():
            free.release()
            if not queue_has_waiting():
                break
            pause(token_pause)
            continue
        entry_id = queue_claim_next_id()
        if entry_id is None:
            free.release()
            break
        with in_flight_lock:
            in_flight[0] += 1
            all_busy = in_flight[0] > len(threads)
        claimed.put(entry_id)
        if all_busy:
            threads.append(threading.Thread(target=opener, name=f"checkout-queue-opener-{len(threads)}"))
            threads[-1].start()
    for _ in threads:
        claimed.put(None)
    for thread in threads:
        thread.join()
    return len(turns)


def _queue_turn(entry: CheckoutQueueEntry) -> bool:
    """Open the Checkout of a claimed row. False when Stripe was busy or unreachable: the row
    then waits again in its own place."""
    booking = entry.booking
    if not booking_hold_ensure(booking=booking):
        booking.refresh_from_db()
        ended = CheckoutQueueEntry.Status.SOLD_OUT
        if booking.status == BookingStatus.PENDING and _slot_closed(booking):
            ended = CheckoutQueueEntry.Status.ENDED
        queue_end(entry=entry, status=ended)
        return True
    try:
        started = _checkout_open(
            booking,
            success_url=entry.success_url,
            cancel_url=entry.cancel_url,
            proven_email=entry.proven_email,
            abandon_on_failure=False,
        )
    except stripe_api.PaymentsUnavailable as error:
        log_event(log, "checkout_queue_put_back", level=logging.WARNING, booking=booking.pk, error=type(error).__name__)
        queue_put_back(entry=entry)
        return False
    except BookingError:
        queue_end(entry=entry, status=CheckoutQueueEntry.Status.ENDED)
        return True
    queue_opened(entry=entry, checkout_url=started.url)
    return True


def _slot_closed(booking: Booking) -> bool:
    slot = Slot.objects.select_related("listing").get(pk=booking.slot_id)
    return slot.is_cancelled or not slot.is_on_sale or not slot.listing.is_active or slot.starts_at <= timezone.now()


def checkout_cancel(*, booking: Booking) -> Booking:
    """The customer cancelled on Checkout: expire the session at Stripe and settle the booking
    from what Stripe then says, so its held seats are free for others at once (or, if the
    payment got there first, it is confirmed). Never under a lock. A Stripe outage leaves the
    booking pending: its hold then lapses with the session, swept by `reconcile`."""
    if booking.status != BookingStatus.PENDING or not booking.checkout_session_id:
        return booking
    try:
        booking_confirm(
            facts=stripe_api.checkout_expire(booking.checkout_session_id, stripe_account=booking.stripe_account_id)
        )
    except stripe_api.PaymentsUnavailable:
        log_event(log, "checkout_cancel_unreachable", level=logging.WARNING, booking=booking.pk)
    except RefundNotCreated:
        pass  # settled; the refund is asked for again by reconcile
    except PaymentFactsMismatch as error:
        log_event(log, "payment_facts_mismatch", level=logging.ERROR, booking=booking.pk, error=str(error))
    booking.refresh_from_db()
    return booking


@dataclass(frozen=True)
class StatusCheck:
    """What a status check found: the booking as it now is, a sentence for the customer when
    something went wrong, and whether Stripe was left unasked because its budget had no token to
    spare (`deferred`: the webhook, or a later check, settles the booking)."""

    booking: Booking
    problem: str = ""
    deferred: bool = False


def _reread(booking: Booking) -> None:
    """The booking's row as it now is. refresh_from_db forgets the slot (with its listing and
    merchant) read with it, three more queries for the page that shows them; kept while the
    booking is still of that slot."""
    slot_field = Booking._meta.get_field("slot")
    slot = slot_field.get_cached_value(booking) if slot_field.is_cached(booking) else None
    booking.refresh_from_db()
    if slot is not None and booking.slot_id == slot.pk:
        slot_field.set_cached_value(booking, slot)


def booking_status_refresh(booking: Booking, *, throttled: bool = True) -> StatusCheck:
    """What the success page shows, for a booking its caller has just read. A final booking is
    answered as read; a pending one asks Stripe, at most once every few seconds per booking
    across all processes, and confirms through the same function as the webhook. The question
    is one that can wait (the webhook brings the same answer): it is asked only when Stripe's
    budget has a token to spare, never at the cost of a checkout start in line
    (payments/budget.py). A poll between two checks costs no query beyond its caller's read.

    `reconcile` passes `throttled=False`: it must ask Stripe about every pending booking, even
    one whose success page asked a moment ago (before the payment went through)."""
    if booking.status != BookingStatus.PENDING or not booking.checkout_session_id:
        return StatusCheck(booking)
    now = timezone.now()
    recently = now - timedelta(seconds=settings.STRIPE_STATUS_CHECK_SECONDS)
    if throttled and booking.stripe_checked_at is not None and booking.stripe_checked_at > recently:
        # Asked a moment ago, by the row as the caller just read it: nothing to claim or read again.
        return StatusCheck(booking)
    claim = Booking.objects.filter(pk=booking.pk, status=BookingStatus.PENDING)
    if throttled:
        claim = claim.filter(Q(stripe_checked_at__isnull=True) | Q(stripe_checked_at__lte=recently))
    claimed = claim.update(stripe_checked_at=now)
    if not claimed:
        _reread(booking)
        return StatusCheck(booking)
    booking.stripe_checked_at = now
    if not budget_take(spare_only=True):
        # Still pending: the claim found it so just now. The webhook, or a later check, settles it.
        log_event(log, "status_check_deferred", booking=booking.pk)
        return StatusCheck(booking, deferred=True)
    problem = ""
    try:
        booking_confirm(
            facts=stripe_api.checkout_facts(booking.checkout_session_id, stripe_account=booking.stripe_account_id)
        )
    except stripe_api.PaymentsUnavailable:
        problem = "We are still checking your payment with Stripe."
    except RefundNotCreated:
        log_event(log, "status_refund_pending", level=logging.WARNING, booking=booking.pk)
    except PaymentFactsMismatch as error:
        log_event(log, "payment_facts_mismatch", level=logging.ERROR, booking=booking.pk, error=str(error))
        problem = "We could not match your payment to this booking. We have been alerted and will contact you."
    _reread(booking)
    return StatusCheck(booking, problem)
