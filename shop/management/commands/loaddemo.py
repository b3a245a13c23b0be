from django.core.management.base import BaseCommand

from bookings.demo import DEMO_PASSWORD, demo_data_load, demo_merchants
from shop.demo import DEMO_FREE_PROMOTION_CODE, demo_bookings_load, demo_connect_load, demo_promotion_code_load


class Command(BaseCommand):
    help = (
        "Create two demo merchants with listings and two weeks of slots, and, when the site is pointed at the "
        "Stripe emulator, a few bookings paid by card through it and the 100%-off promotion code "
        f"{DEMO_FREE_PROMOTION_CODE}; with CONNECT_ENABLED, connected accounts for the merchants (two "
        "onboarded, a third not). Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=14, help="How many days of slots to create.")

    def handle(self, *args, days: int, **options):
        created = demo_data_load(days=days)
        self.stdout.write(
            f"Demo data: {created['merchants']} merchants, {created['listings']} listings, {created['slots']} slots created."
        )
        for name, state in demo_connect_load() or ():
            self.stdout.write(f"Connect: {name}'s connected account {state}.")
        bookings = demo_bookings_load()
        if bookings is None:
            self.stdout.write("No demo bookings: they are paid through the Stripe emulator, and none is configured.")
        else:
            self.stdout.write(f"Demo bookings paid through the Stripe emulator: {bookings} created.")
        codes = demo_promotion_code_load()
        for code, merchant_name in codes or ():
            self.stdout.write(
                f"Promotion code {code}: 100% off {merchant_name}'s listings on the emulator's payment page, no card needed."
            )
        users = ", ".join(demo_merchants())
        self.stdout.write(f"Merchant sign-ins: {users} (password: {DEMO_PASSWORD})")
