"""Use cases shared by REST, sockets and the worker; each commits its own work."""
