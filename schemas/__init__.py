"""The wire contract of Reach: marshmallow schemas shared by REST, sockets, push and docs."""
