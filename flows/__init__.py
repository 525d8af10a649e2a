"""Prefect flows: the daily loop, one flow per stage, and operator flows.

Importing any flow masks the state messages Prefect builds from exceptions (flows/state_masking.py),
so a deployment's process is covered before its first run.
"""

from minyi.flows.state_masking import install_state_masking

install_state_masking()
