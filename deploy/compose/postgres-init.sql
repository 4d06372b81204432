-- Run once by the Postgres image on an empty data volume (/docker-entrypoint-initdb.d), as
-- POSTGRES_USER in POSTGRES_DB (mcpauth, auth-service's database): token-vault gets its own.
CREATE DATABASE token_vault;
