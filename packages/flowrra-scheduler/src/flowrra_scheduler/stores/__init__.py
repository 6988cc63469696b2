"""The schedule stores: one SQL core (sql.py) and a dialect per database."""
