-- A message rejected now that was loaded in an earlier delivery leaves user_logins:
-- every message is in one table, once.
DELETE FROM user_logins WHERE message_id = ANY($1::varchar[]);
