-- The analysts' table (as migration 0001 has it, message_id last), range-partitioned by
-- create_date: `migrate --partition-by month` when there is no user_logins yet.
CREATE TABLE IF NOT EXISTS user_logins(
    user_id             varchar(128),
    device_type         varchar(32),
    masked_ip           varchar(256),
    masked_device_id    varchar(256),
    locale              varchar(32),
    app_version         integer,
    create_date         date,
    message_id          varchar(128)
) PARTITION BY RANGE (create_date);
