"""From run directories to tables, plots and statistics."""
