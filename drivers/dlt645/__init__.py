"""DL/T 645-2007, the protocol of Chinese electricity meters, over a serial line.

``codec`` frames (no I/O), ``bcd`` decodes values and holds the common identifiers,
``bus`` owns a serial port and reads meters, ``simulator`` serves simulated meters on a
pty for tests and demos.
"""
