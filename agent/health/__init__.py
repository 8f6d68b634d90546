"""Operations: live status, completeness as platforms count it, the health topic, metrics."""
