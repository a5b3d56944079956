"""Throw-away PostgreSQL schemas: each test or benchmark run puts the store's tables in a
schema of its own (``?search_path=``) and drops it afterwards."""

from __future__ import annotations

import uuid

import asyncpg


async def create_schema(dsn: str, prefix: str) -> str:
    """Create an empty schema named ``prefix`` + a random hex and return its name."""
    schema = f"{prefix}{uuid.uuid4().hex}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    return schema


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop ``schema`` and everything in it (nothing if it is gone already)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
