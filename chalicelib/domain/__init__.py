"""Pure domain rules: identifiers, amounts, expiry lots. No I/O here."""
