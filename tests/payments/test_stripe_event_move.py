"""StripeEvent moved from the bookings app to payments without touching its table: a database
holding received events before the move holds the same rows after it, readable by the new model,
and the move runs backwards too."""

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from payments.models import StripeEvent

BEFORE = [("bookings", "0006_rules"), ("payments", None)]
OLD_NODE = ("bookings", "0006_rules")


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


def latest():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_events_received_before_the_move_are_there_after_it():
    after = latest()
    executor = migrate(BEFORE)
    OldStripeEvent = executor.loader.project_state(OLD_NODE).apps.get_model("bookings", "StripeEvent")
    old_type = ContentType.objects.get_or_create(app_label="bookings", model="stripeevent")[0]
    ContentType.objects.filter(app_label="payments", model="stripeevent").delete()
    OldStripeEvent.objects.create(
        event_id="evt_before_the_move", type="checkout.session.completed", payload={"id": "evt_before_the_move"},
        status="failed", error="PaymentsUnavailable: Stripe timed out", attempts=2,
    )

    migrate(after)

    moved = StripeEvent.objects.get(event_id="evt_before_the_move")
    assert (moved.type, moved.status, moved.attempts) == ("checkout.session.completed", "failed", 2)
    assert moved.payload == {"id": "evt_before_the_move"}
    assert moved.error == "PaymentsUnavailable: Stripe timed out"
    assert StripeEvent._meta.db_table == "bookings_stripeevent"
    # The content type (and so every permission granted on it) followed the model.
    ContentType.objects.clear_cache()
    assert ContentType.objects.get_for_model(StripeEvent).pk == old_type.pk

    # And backwards: the row stays, the bookings app's state has the model again.
    executor = migrate(BEFORE)
    back = executor.loader.project_state(OLD_NODE).apps.get_model("bookings", "StripeEvent")
    assert back.objects.filter(event_id="evt_before_the_move", status="failed").exists()
    migrate(after)
    assert StripeEvent.objects.filter(event_id="evt_before_the_move").count() == 1
