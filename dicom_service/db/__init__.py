"""The metadata index: SQLAlchemy models, sessions and migrations."""
