"""Versioned SQL migrations, one directory per database kind (``NNNN_name.sql``)."""
