"""Storage adapters: PynamoDB models of the tables and the DynamoDB implementation of the ledger store."""
