-- Rate-limit policies for the HTTP services: a token bucket per client and endpoint.
-- A request uses the most specific policy for its client (an exact address, then
-- the longest matching CIDR block, then '*') and, among those, its endpoint
-- ('METHOD /route/{pattern}' before '*'). Services reload the table when it changes
-- (the trigger below notifies them), so a policy change needs no restart.
CREATE TABLE rate_limit_policies (
    client            text             NOT NULL DEFAULT '*',
    endpoint          text             NOT NULL DEFAULT '*',
    -- Largest burst: the bucket holds at most this many requests.
    capacity          integer          NOT NULL CHECK (capacity > 0),
    -- Sustained rate: requests per second added back to the bucket.
    refill_per_second double precision NOT NULL CHECK (refill_per_second > 0),
    description       text             NOT NULL DEFAULT '',
    updated_at        timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (client, endpoint),
    CHECK (endpoint = '*' OR endpoint ~ '^[A-Z]+ /'),
    -- An address or a CIDR block ('10.0.0.0/8'); a malformed one fails the insert.
    CHECK (client = '*' OR client::cidr IS NOT NULL)
);

-- Every client gets its own bucket per endpoint: bursts of 200, 100 requests/s after.
INSERT INTO rate_limit_policies (client, endpoint, capacity, refill_per_second, description)
VALUES ('*', '*', 200, 100, 'default for every client and endpoint');

CREATE FUNCTION notify_rate_limit_policies_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vectis_rate_limit_policies', '');
    RETURN NULL;
END $$;

CREATE TRIGGER rate_limit_policies_changed
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON rate_limit_policies
FOR EACH STATEMENT EXECUTE FUNCTION notify_rate_limit_policies_changed();
