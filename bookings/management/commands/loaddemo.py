from django.core.management.base import BaseCommand

from bookings.demo import DEMO_MERCHANTS, DEMO_PASSWORD, demo_data_load


class Command(BaseCommand):
    help = "Create two demo merchants with listings, two weeks of slots and a few bookings (safe to run again)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=14, help="How many days of slots to create.")

    def handle(self, *args, days: int, **options):
        created = demo_data_load(days=days)
        self.stdout.write(
            f"Demo data: {created['merchants']} merchants, {created['listings']} listings, "
            f"{created['slots']} slots, {created['bookings']} bookings created."
        )
        users = ", ".join(DEMO_MERCHANTS)
        self.stdout.write(f"Merchant sign-ins: {users} (password: {DEMO_PASSWORD})")
