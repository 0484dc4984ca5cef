"""Worker processes: boot after fork, heartbeat, recycling, graceful stop."""
