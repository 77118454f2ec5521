-- Is there a unique index on user_logins(message_id) alone? The merge's ON CONFLICT needs it.
SELECT EXISTS (
    SELECT 1
    FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = to_regclass('user_logins')
      AND i.indisunique AND i.indnkeyatts = 1 AND a.attname = 'message_id'
);
