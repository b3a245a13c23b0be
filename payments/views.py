import logging

from django.conf import settings
from django.http import HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from common.logs import log_event
from payments import stripe_api
from payments.webhooks import EventAccountMismatch, EventResult, stripe_event_receive

# The logger the webhook endpoint has always written to (it lived in shop/views.py).
log = logging.getLogger("shop.views")


def _webhook_body(request) -> bytes | None:
    """The raw body, read past the forms' size limit up to the webhook's own; None when too large."""
    length = request.META.get("CONTENT_LENGTH") or ""
    if not length.isdigit() or int(length) > settings.WEBHOOK_MAX_BODY_BYTES:
        return None
    return request.read(int(length))


@csrf_exempt
@require_POST
def stripe_webhook(request):
    """The platform endpoint: events of the platform's own account (STRIPE_WEBHOOK_SECRET)."""
    return _receive(request, connect=False)


@csrf_exempt
@require_POST
def stripe_connect_webhook(request):
    """The Connect endpoint: events of merchants' connected accounts, each naming its account in
    `event.account` (STRIPE_CONNECT_WEBHOOK_SECRET). With direct charges a customer's payment is
    told here only. Feeds the same services as the platform endpoint."""
    return _receive(request, connect=True)


def _receive(request, *, connect: bool):
    payload = _webhook_body(request)
    if payload is None:
        return HttpResponse("Webhook refused: body missing or too large.", status=413, content_type="text/plain")
    signature = request.headers.get("Stripe-Signature")
    try:
        event = stripe_api.webhook_event(payload=payload, signature_header=signature, connect=connect)
        account = (event.get("account") or "") if connect else ""
        # Refused, with nothing written, when what it names is not of its account.
        result = stripe_event_receive(event, account=account)
    except (stripe_api.WebhookRejected, EventAccountMismatch) as error:
        log_event(
            log,
            "webhook_rejected",
            level=logging.WARNING if isinstance(error, stripe_api.WebhookRejected) else logging.ERROR,
            reason=str(error),
            endpoint="connect" if connect else "platform",
            signature_fingerprint=stripe_api.signature_fingerprint(signature),
        )
        return HttpResponseBadRequest(f"Webhook refused: {error}.", content_type="text/plain")
    log_event(
        log, "webhook_received", event_id=event.get("id"), type=event.get("type"), account=account, result=result.value
    )
    if result in (EventResult.FAILED_RETRY, EventResult.IN_PROGRESS):
        return HttpResponse("Not processed yet; please retry.", status=500, content_type="text/plain")
    return HttpResponse(result.value, content_type="text/plain")
