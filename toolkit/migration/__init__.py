"""Moving containers between engines and hosts."""
