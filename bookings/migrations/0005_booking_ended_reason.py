from django.db import migrations, models


def record_ended_reasons(apps, schema_editor):
    """Bookings ended before the reason was recorded on them: the reason of their first refund;
    a cancellation with nothing to refund, from when it happened."""
    Booking = apps.get_model("bookings", "Booking")
    ended = Booking.objects.filter(status__in=["refund_due", "refunded", "refund_failed", "cancelled"], ended_reason="")
    for booking in ended.select_related("slot").iterator():
        first_refund = booking.refunds.order_by("created_at", "pk").first()
        if first_refund is not None:
            reason = first_refund.reason
        elif booking.confirmed_at is None:
            slot_cancelled_first = booking.slot.cancelled_at and booking.slot.cancelled_at <= booking.updated_at
            reason = "slot_cancelled" if slot_cancelled_first else "sold_out"
        else:
            slot_cancelled_first = booking.slot.cancelled_at and booking.slot.cancelled_at <= booking.updated_at
            reason = "slot_cancelled" if slot_cancelled_first else "merchant"
        Booking.objects.filter(pk=booking.pk).update(ended_reason=reason)


class Migration(migrations.Migration):

    dependencies = [
        ("bookings", "0004_stripe_event_claim"),
    ]

    operations = [
        migrations.AddField(
            model_name="booking",
            name="ended_reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("sold_out", "Sold out while paying"),
                    ("slot_cancelled", "Slot cancelled"),
                    ("merchant", "Refunded by the merchant"),
                ],
                max_length=16,
            ),
        ),
        migrations.RunPython(record_ended_reasons, migrations.RunPython.noop),
    ]
