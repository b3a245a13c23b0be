from django.core.management.base import BaseCommand

from bookings.services import reminders_send


class Command(BaseCommand):
    help = "Send the reminder e-mails due now (Celery beat does this every minute; safe to run at any time)."

    def handle(self, *args, **options):
        sent = reminders_send()
        self.stdout.write(f"reminders sent: {sent}")
