"""Bridges to other tools' model loaders (optional extras): :mod:`sr_core.interop.spandrel`."""
