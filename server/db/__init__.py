"""Persistence: SQLAlchemy 2 models named in domain terms, repositories filtered by scope."""
