"""Label Studio: the local server, the connection, and the project."""
