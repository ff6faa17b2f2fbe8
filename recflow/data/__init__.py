"""Raw data: the event/catalogue schema, the synthetic generator, real-data loaders and daily batches."""
