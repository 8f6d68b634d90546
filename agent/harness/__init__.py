"""Shared scaffolding for the tests, the benchmarks and ``edge-agent demo``: a builder that
writes a site's config file, and one MQTT subscriber with its ready-made uses (collect,
count, print). Nothing here is imported by the daemon itself."""
