"""Tools for tests, benchmarks and demos, not for scoring: an OpenAI-compatible test server that
answers like a model, fixture images, a tiny random-weight CLIP checkpoint built offline."""
