"""Pure rules of Reach: no Flask, no SQLAlchemy, no I/O."""
