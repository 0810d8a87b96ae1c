"""Activities: the code that touches the world (DuckDB, the SQL store, HTTP), run by the worker."""
