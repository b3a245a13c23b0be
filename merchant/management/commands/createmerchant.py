"""`manage.py createmerchant`: the operator creates a merchant's sign-in. There is no sign-up.

Interactive by default: it asks for what the flags do not give. With --no-input every value
comes from flags, and the password from the MERCHANT_PASSWORD environment variable (never a
flag, which would show in the process list and shell history); without it the account gets no
usable password and the merchant chooses one through "Forgotten your password?".
"""

import getpass
import os

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.urls import reverse

from bookings.timezones import validate_selectable_timezone
from bookings.notifications import absolute_url
from bookings.services import BookingError, merchant_create

PASSWORD_ENV = "MERCHANT_PASSWORD"


class Command(BaseCommand):
    help = "Create a merchant and their sign-in (asks for what the options leave out)."

    def add_arguments(self, parser):
        parser.add_argument("--username", help="The name they sign in with.")
        parser.add_argument("--email", help="Their e-mail address (for password resets).")
        parser.add_argument("--display-name", help="The name customers see.")
        parser.add_argument("--timezone", help="Timezone of their times, such as Europe/London (the default).")
        parser.add_argument("--support-email", default=None, help="Where customers' replies go (default: --email).")
        parser.add_argument(
            "--no-input",
            "--noinput",
            action="store_false",
            dest="interactive",
            help=f"Ask nothing. The password comes from ${PASSWORD_ENV}; without it, none is set.",
        )

    def handle(self, *args, interactive: bool, **options):
        self.interactive = interactive
        try:
            self._create(options)
        except (EOFError, KeyboardInterrupt):
            raise CommandError("Cancelled: no merchant was created.") from None

    def _create(self, options):
        interactive = self.interactive
        username = self._value(options["username"], "--username", "User name", self._check_username)
        email = self._value(options["email"], "--email", "E-mail", self._check_email)
        display_name = self._value(
            options["display_name"], "--display-name", "Name shown to customers", self._check_text
        )
        timezone_name = self._value(
            options["timezone"], "--timezone", "Timezone", self._check_timezone, default="Europe/London"
        )
        support_email = options["support_email"]
        if support_email is None:
            support_email = (
                self._value(None, "--support-email", "Support e-mail", self._check_optional_email, default=email)
                if interactive
                else email
            )
        else:
            support_email = self._check_optional_email(support_email)
        password = self._password(username=username, email=email)
        try:
            merchant = merchant_create(
                username=username,
                email=email,
                password=password,
                display_name=display_name,
                timezone_name=timezone_name,
                support_email=support_email,
            )
        except BookingError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(self.style.SUCCESS(f"Created merchant “{merchant.display_name}” (sign in as {username})."))
        if password is None:
            reset = absolute_url(reverse("accounts:password_reset"))
            self.stdout.write(f"No password is set. Ask them to choose one at {reset} with {email}.")

    def _value(self, given, option: str, label: str, check, *, default: str | None = None) -> str:
        if given is not None:
            try:
                return check(given)
            except ValidationError as error:
                raise CommandError(f"{option}: {' '.join(error.messages)}") from None
        if not self.interactive:
            if default is not None:
                return default
            raise CommandError(f"{label} is required with --no-input: pass {option}.")
        while True:
            prompt = f"{label}{f' [{default}]' if default else ''}: "
            raw = input(prompt).strip() or (default or "")
            try:
                return check(raw)
            except ValidationError as error:
                self.stderr.write(" ".join(error.messages))

    def _password(self, *, username: str, email: str) -> str | None:
        from django.contrib.auth import get_user_model

        probe = get_user_model()(username=username, email=email)
        if not self.interactive:
            password = os.environ.get(PASSWORD_ENV) or None
            if password is not None:
                try:
                    validate_password(password, probe)
                except ValidationError as error:
                    raise CommandError(f"${PASSWORD_ENV}: {' '.join(error.messages)}") from None
            return password
        while True:
            first = getpass.getpass("Password (leave empty to let them choose one by e-mail): ")
            if not first:
                return None
            if first != getpass.getpass("Password again: "):
                self.stderr.write("The two passwords differ. Try again.")
                continue
            try:
                validate_password(first, probe)
            except ValidationError as error:
                self.stderr.write(" ".join(error.messages))
                continue
            return first

    @staticmethod
    def _check_text(value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValidationError("Enter a value.")
        if len(value) > 120:
            raise ValidationError("Keep it to 120 characters or fewer.")
        return value

    @staticmethod
    def _check_username(value: str) -> str:
        from django.contrib.auth import get_user_model

        value = value.strip()
        field = get_user_model()._meta.get_field("username")
        if not value:
            raise ValidationError("Enter a user name.")
        field.run_validators(value)
        if len(value) > field.max_length:
            raise ValidationError(f"Keep the user name to {field.max_length} characters or fewer.")
        return value

    @staticmethod
    def _check_email(value: str) -> str:
        value = value.strip()
        validate_email(value)
        return value

    @staticmethod
    def _check_optional_email(value: str) -> str:
        value = (value or "").strip()
        if value:
            validate_email(value)
        return value

    @staticmethod
    def _check_timezone(value: str) -> str:
        value = value.strip()
        validate_selectable_timezone(value)
        return value
