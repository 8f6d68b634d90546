"""Edge alarms: config models, the engine fed by every reading, and the facts kept in the buffer."""
