"""StripeEvent now belongs to the payments app. Its table stays where it is, with every row:
this migration only forgets the model in the bookings app's state; payments' 0001_initial then
takes it over (state only too)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("bookings", "0006_rules"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="StripeEvent")],
            database_operations=[],
        ),
    ]
