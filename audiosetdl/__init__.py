"""audiosetdl: AudioSet segment lists -> exact 16 kHz clips -> reference-exact VGGish embeddings.

Stages share nothing but the run directory (see `audiosetdl.rundir`)."""

__version__ = "0.1.0"
