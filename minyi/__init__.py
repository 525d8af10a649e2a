"""minyi: the Public Opinion 110 closed loop as Prefect flows."""
