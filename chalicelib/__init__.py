"""The Municipal Point Cloud application: domain rules, services, storage adapters and the HTTP edge."""
