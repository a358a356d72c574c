"""The recommender (``python -m bench.recommender``): ranking, one worker on Kafka, Faust's floor."""
