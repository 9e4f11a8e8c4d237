"""What runs nodes for the app: the headless reader, the dashboard's host, devnet nodes."""
