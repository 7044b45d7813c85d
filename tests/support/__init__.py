"""Test support: a live server, an HTTP client for the API, Socket.IO phones."""
