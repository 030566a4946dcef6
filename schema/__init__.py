"""The core's SQL migrations, installed as the package ``n2gateway.schema``."""
