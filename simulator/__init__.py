"""The listener simulator behind ``cadenza simulate``: a client of the gateway, never part of it.

Simulated listeners (the listener model, :mod:`simulator.plays`) play through the gateway's
HTTP API (:mod:`simulator.senders` over :mod:`simulator.keepalive`) or straight to Kafka,
and watch their recommendations on the gateway's websockets (:mod:`simulator.sockets`);
the runner (:mod:`simulator.run`) reports what happened (:mod:`simulator.report`). Tokens
are signed with :mod:`schemas.tokens`; nothing of ``gateway`` is imported.
"""
