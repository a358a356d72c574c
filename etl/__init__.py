"""ETL: FMA audio and metadata -> audio features -> MongoDB ``tracks`` and ``tracks.new``."""
