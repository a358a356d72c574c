"""The Starlette gateway: websockets, audio streaming, REST API, web player, metrics."""
