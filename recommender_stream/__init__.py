"""The Faust recommender: per-listener session state -> ``cadenza.recommendations``."""
