-- Does the vault hold entries, none of them made with masking key $1?
SELECT EXISTS (SELECT 1 FROM pii_vault)
   AND NOT EXISTS (SELECT 1 FROM pii_vault WHERE mask_key_id = $1);
