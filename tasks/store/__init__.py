"""The store: engine and migrations runner, bulk paths, outbox, leases."""
