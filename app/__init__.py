"""unitscope's dashboard: a read-only FastAPI + Jinja2 + Plotly server over the worker's DuckDB file."""
