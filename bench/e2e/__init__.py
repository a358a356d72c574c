"""End to end (``python -m bench.e2e``): a play posted -> its recommendation on the socket."""
