-- Idempotent loading on user_logins range-partitioned by create_date: a unique index must
-- hold the partition key, and (message_id, create_date) is as unique as message_id alone
-- (a message's create_date never changes). message_id leads, so a lookup by message_id
-- alone (a reject unloading its earlier row) is one probe per partition. Named as
-- migration 0001 names the index it makes on a table that is not partitioned.
ALTER TABLE user_logins ADD COLUMN IF NOT EXISTS message_id varchar(128);
CREATE UNIQUE INDEX IF NOT EXISTS user_logins_message_id_key ON user_logins (message_id, create_date);
