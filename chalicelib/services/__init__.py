"""Services: plain commands in, results out, storage injected. No HTTP and no DynamoDB here."""
