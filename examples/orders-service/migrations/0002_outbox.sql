-- The transactional outbox (Debezium's outbox event router columns): an
-- order's `OrderPlaced` event is written here in the order's transaction
-- and published by `strangler cdc run` with `[[cdc.outbox]]` to
-- `<topic_prefix>.outbox.order`, keyed by the order id. Consumers drop an
-- event whose `id` they have seen; rows may be deleted once published.
CREATE TABLE outbox (
    id             UUID PRIMARY KEY,
    aggregatetype  TEXT NOT NULL,
    aggregateid    TEXT NOT NULL,
    type           TEXT NOT NULL,
    payload        JSONB NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
