SELECT coalesce(max(id), 0) FROM pii_reveal_audit;
