"""Writing to devices: control config, lighting schedules, platform commands and their audit.

Entry points for the parts that execute writes (the bus write path, the MQTT command
subscription, ``control set`` through the daemon): :func:`agent.control.commands.CommandDesk.decide`
turns a received command into the register writes to execute or a typed refusal;
:func:`agent.control.schedule.ScheduleEngine.in_force` and ``.upcoming`` say what the
schedules want; :class:`agent.control.audit.AuditLog` records what happened.
"""
