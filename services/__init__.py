"""What runs: the Ray Serve query API, the local stack launcher and the CLI."""
