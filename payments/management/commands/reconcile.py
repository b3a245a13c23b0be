from django.core.management.base import BaseCommand

from payments.reconcile import reconcile_run


class Command(BaseCommand):
    help = (
        "Settle pending bookings with Stripe, retry refunds that are due, settle pending refunds and "
        "process failed webhook events again. Idempotent; safe to run beside the site, e.g. every 5 minutes."
    )

    def handle(self, *args, **options):
        summary = reconcile_run()
        for line in summary.lines():
            self.stdout.write(line)
        for error in summary.errors:
            self.stderr.write(f"not settled yet: {error}")
