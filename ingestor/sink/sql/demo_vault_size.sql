SELECT count(*) FROM pii_vault;
