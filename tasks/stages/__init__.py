"""The set-based SQL and the policy of each loop stage (ingest, follow-up, supervision, reports, quality)."""
