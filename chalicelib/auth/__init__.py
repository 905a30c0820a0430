"""Authentication: terminal request signatures, card certificates and signatures, staff sessions."""
