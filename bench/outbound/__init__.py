"""bench/outbound: delivery throughput of mail queued through the API."""
