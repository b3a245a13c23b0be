"""The received Stripe events, taken over from the bookings app (its 0007_stripe_event_to_payments) with their
table, bookings_stripeevent, and every row in it: nothing is created or copied in the database.
The content type follows the model, so permissions granted on it are kept."""

import django.utils.timezone
from django.db import migrations, models


def content_type_to_payments(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="payments", model="stripeevent").exists():
        ContentType.objects.filter(app_label="bookings", model="stripeevent").update(app_label="payments")


def content_type_to_bookings(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="bookings", model="stripeevent").exists():
        ContentType.objects.filter(app_label="payments", model="stripeevent").update(app_label="bookings")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("bookings", "0007_stripe_event_to_payments"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="StripeEvent",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("event_id", models.CharField(max_length=255, unique=True)),
                        ("type", models.CharField(max_length=100)),
                        ("payload", models.JSONField()),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("received", "Received"),
                                    ("processing", "Processing"),
                                    ("processed", "Processed"),
                                    ("ignored", "Ignored"),
                                    ("failed", "Failed"),
                                ],
                                default="received",
                                max_length=16,
                            ),
                        ),
                        ("error", models.TextField(blank=True)),
                        ("attempts", models.PositiveIntegerField(default=0)),
                        ("received_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("claimed_at", models.DateTimeField(blank=True, null=True)),
                        ("processed_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        "db_table": "bookings_stripeevent",
                        "ordering": ["-received_at", "-pk"],
                        "indexes": [models.Index(fields=["status", "received_at"], name="stripe_event_status_idx")],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_type_to_payments, content_type_to_bookings),
    ]
