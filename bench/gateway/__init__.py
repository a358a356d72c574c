"""The gateway (``python -m bench.gateway``): websockets held, Kafka -> socket, audio ranges."""
