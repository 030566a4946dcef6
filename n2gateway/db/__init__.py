"""PostgreSQL access: the connection pool, migrations, LISTEN and the embedded server.

Only this package knows the driver (txpostgres, psycopg2): it raises its own errors
(``db.errors``) and hands out its own connections (``Database.dedicated``).
"""
from n2gateway.db.dedicated import DedicatedConnection
from n2gateway.db.errors import (ConstraintViolation, DatabaseError, DatabaseUnavailable,
                                 SerializationConflict)
from n2gateway.db.pool import Database, Transaction, retry_delay

__all__ = ["ConstraintViolation", "Database", "DatabaseError", "DatabaseUnavailable",
           "DedicatedConnection", "SerializationConflict", "Transaction", "retry_delay"]
