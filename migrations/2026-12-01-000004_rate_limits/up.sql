-- Requests counted per rate-limit policy, subject (an API key's public prefix, or a client
-- address) and fixed window, shared by every instance on this database: each instance adds
-- what it admitted and reads back the total, so N instances enforce one limit together.
CREATE TABLE rate_limit_counts (
    policy       text   NOT NULL,
    subject      text   NOT NULL,
    -- the window's start, in seconds since the Unix epoch (windows are aligned to it)
    window_start bigint NOT NULL,
    count        bigint NOT NULL,
    PRIMARY KEY (policy, subject, window_start)
);
CREATE INDEX rate_limit_counts_window_idx ON rate_limit_counts (window_start);
