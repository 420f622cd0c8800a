-- The people who live in a property (its residents): the reference workflow tells each
-- of them about a maintenance request, a fan-out over the list one query reads.

CREATE TABLE residents (
    id           bigserial PRIMARY KEY,
    property_id  bigint NOT NULL REFERENCES properties (id),
    name         text NOT NULL,
    contact      text NOT NULL,   -- an address on the channel: an email, a phone number
    channel      text NOT NULL DEFAULT 'email'
);

CREATE INDEX residents_property ON residents (property_id, id);
