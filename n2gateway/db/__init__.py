"""PostgreSQL access: the connection pool, migrations, LISTEN and the embedded server."""
from n2gateway.db.pool import Database, DatabaseUnavailable, Transaction, retry_delay

__all__ = ["Database", "DatabaseUnavailable", "Transaction", "retry_delay"]
