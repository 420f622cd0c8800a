"""A few properties, assets and technicians for `make run` and the tests."""

from __future__ import annotations

import asyncpg

PROPERTIES = [  # (name, address, latitude, longitude)
    ("Lindenhof", "Lindenstrasse 4, Berlin", 52.5030, 13.3920),
    ("Spreeblick", "Am Ufer 12, Berlin", 52.5160, 13.4540),
    ("Gartenhaus", "Parkweg 7, Potsdam", 52.3990, 13.0650),
]
ASSETS = [  # (property index, name, category)
    (0, "Kitchen sink", "plumbing"),
    (0, "Fuse box", "electrical"),
    (1, "Boiler", "hvac"),
    (2, "Bathroom pipes", "plumbing"),
]
TECHNICIANS = [  # (name, skills, latitude, longitude, capacity)
    ("Ana Plumb", ["plumbing"], 52.5000, 13.4000, 3),
    ("Ben Wire", ["electrical"], 52.5200, 13.4100, 2),
    ("Cleo Heat", ["hvac", "plumbing"], 52.4500, 13.2000, 2),
    ("Dev Fixit", ["plumbing", "electrical", "hvac"], 52.4000, 13.0700, 4),
    ("Eli Away", ["plumbing"], 52.5010, 13.3930, 5),
]
RESIDENTS = [  # (property index, name, contact, channel)
    (0, "Mia Linden", "mia@lindenhof.example", "email"),
    (0, "Noah Linden", "+49 30 1111 2222", "sms"),
    (0, "Ola Linden", "ola@lindenhof.example", "email"),
    (1, "Paul Spree", "paul@spreeblick.example", "email"),
]


async def seed(connection: asyncpg.Connection) -> bool:
    """Insert the demo rows unless properties exist already; True when it inserted."""
    async with connection.transaction():
        if await connection.fetchval("SELECT count(*) FROM properties"):
            await seed_residents(connection)
            return False
        property_ids = [
            await connection.fetchval(
                "INSERT INTO properties (name, address, latitude, longitude)"
                " VALUES ($1, $2, $3, $4) RETURNING id",
                *row,
            )
            for row in PROPERTIES
        ]
        await connection.executemany(
            "INSERT INTO assets (property_id, name, category) VALUES ($1, $2, $3)",
            [(property_ids[index], name, category) for index, name, category in ASSETS],
        )
        await connection.executemany(
            "INSERT INTO technicians (name, skills, latitude, longitude, capacity)"
            " VALUES ($1, $2, $3, $4, $5)",
            TECHNICIANS,
        )
        # Eli lives next door to Lindenhof but is off duty: the nearest must be active.
        await connection.execute("UPDATE technicians SET active = false WHERE name = 'Eli Away'")
        await seed_residents(connection)
    return True


async def seed_residents(connection: asyncpg.Connection) -> None:
    """The demo properties' residents (added to a database seeded before they were)."""
    if await connection.fetchval("SELECT count(*) FROM residents"):
        return
    names = [row[0] for row in PROPERTIES]
    await connection.executemany(
        "INSERT INTO residents (property_id, name, contact, channel)"
        " SELECT id, $2, $3, $4 FROM properties WHERE name = $1",
        [(names[index], name, contact, channel) for index, name, contact, channel in RESIDENTS],
    )
