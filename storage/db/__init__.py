"""The metadata database: SQLAlchemy 2 models, the engine wrapper and schema migrations."""
