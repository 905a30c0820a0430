"""The shop and facility terminal: request signing, card access and the command line."""
