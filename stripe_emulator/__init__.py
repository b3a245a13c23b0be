"""A local, stateful emulator of the part of Stripe's API a Checkout-based shop uses.

    from stripe_emulator import Emulator

    with Emulator() as emu:          # in-memory, on a free port
        client = stripe.StripeClient("sk_test_emulator", base_addresses={"api": emu.url})

See README.md in this package for the command line, the control API and the test cards.
"""

from .backend import Tuning
from .emulator import Emulator

__all__ = ["Emulator", "Tuning"]
__version__ = "1.0.0"
