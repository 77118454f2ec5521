DELETE FROM pii_vault WHERE token = ANY($1::varchar[]) RETURNING token;
