"""Service layer: all behaviour lives here. Never imports streamlit."""
