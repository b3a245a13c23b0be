"""A randomized race-and-fault simulation of the payment path (see README, "Simulation")."""
