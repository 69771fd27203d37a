"""Web views served by the worker's built-in Faust web server, one module each."""
