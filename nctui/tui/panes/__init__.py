"""One module per pane; each draws from a View and knows its own help lines."""
