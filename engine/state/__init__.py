"""What survives and what is told: SQLite, the journal, the event bus, commands, recordings."""
